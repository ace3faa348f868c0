import { post, submitting } from "./api.js";

// Only a path on this site (the server applies the same rule, server/pages.py): "/" then
// URL characters only. Browsers drop tabs and newlines and read "\" as "/", so
// "/%09/evil.example" would leave the site: no whitespace, no backslash, no "//" first.
const LOCAL_PATH = /^\/(?!\/)[A-Za-z0-9\-._~!$&'()*+,;=:@%/?#]*$/;

function nextPath() {
  const next = new URLSearchParams(location.search).get("next") || "";
  return LOCAL_PATH.test(next) ? next : "/diary";
}

const form = document.getElementById("login-form");
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = new FormData(form);
  const done = await submitting(form, () =>
    post("/api/login", { email: String(data.get("email")), password: String(data.get("password")) }),
  );
  if (done) location.assign(nextPath());
});
