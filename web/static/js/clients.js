// The Clients page: search as you type, open a client, add a new one.
import { get, post, submitting } from "./api.js";
import { clientBody, clientFields } from "./client-form.js";
import { announce, el, formatDay } from "./shell.js";

const searchForm = document.getElementById("client-search-form");
const query = document.getElementById("client-query");
const status = document.getElementById("clients-status");
const rows = document.querySelector("#clients-table tbody");
const newForm = document.getElementById("new-client-form");
newForm.querySelector("[data-client-fields]").replaceWith(...clientFields());

let serial = 0;
async function search() {
  const mine = ++serial;
  const q = query.value.trim();
  let found;
  try {
    found = await get(`/api/clients?q=${encodeURIComponent(q)}`);
  } catch (error) {
    announce(status, error.message);
    return;
  }
  if (mine !== serial) return; // a newer search is on its way
  rows.replaceChildren(
    ...found.map((c) =>
      el(
        "tr",
        { "data-client-id": c.id },
        el("th", { scope: "row" }, el("a", { href: `/clients/${c.id}`, text: c.name })),
        el("td", { text: c.email || "" }),
        el("td", { text: c.phone || "" }),
        el("td", { text: formatDay(c.date_of_birth) }),
      ),
    ),
  );
  const count = found.length;
  announce(
    status,
    count ? `${count} client${count === 1 ? "" : "s"} found.` : q ? `No client matches “${q}”. Add them below.` : "No clients yet.",
  );
}

let timer = 0;
query.addEventListener("input", () => {
  clearTimeout(timer);
  timer = setTimeout(search, 200);
});
searchForm.addEventListener("submit", (event) => {
  event.preventDefault();
  search();
});

newForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const created = await submitting(newForm, () => post("/api/clients", clientBody(newForm)));
  if (created) location.assign(`/clients/${created.id}?added=1`);
});

search();
