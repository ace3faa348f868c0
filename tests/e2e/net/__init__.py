"""Real-network test helpers: network namespaces joined by veth pairs, link shaping
(tbf rate caps, nftables loss and outages), a userspace delay relay, coturn, and Chromium
started inside a namespace."""
