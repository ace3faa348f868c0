import { post, submitting } from "./api.js";

// Only a path on this site (the server applies the same rule): no open redirect.
function nextPath() {
  const next = new URLSearchParams(location.search).get("next") || "";
  if (next.startsWith("/") && !next.startsWith("//") && !next.includes("\\")) return next;
  return "/diary";
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
