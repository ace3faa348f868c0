// Buying a bundle of video minutes (R-M2), the one way for the minutes dashboard and the
// clinician's pre-call screen alike: the bundles on offer, the question asked before
// paying, the purchase with one idempotency key per attempt, PayPal's approval page, and
// what the server's answer means for the person.
import { api } from "./api.js";

/**
 * @typedef {{status: string, bundle_minutes: number, approve_url?: string, failure_reason?: string}} Purchase
 * @typedef {{purchase: Purchase, balance_display?: string, message?: string}} PurchaseReply
 */

/** The bundles on offer: `{bundles: [{minutes, label, net_pence, vat_pence, gross_pence}]}`. */
export function listBundles({ signInAgain = true } = {}) {
  return api("GET", "/api/minutes/bundles", undefined, { signInAgain });
}

/** What is asked before paying: the price with VAT (R-M2) and how it is paid. */
export function purchaseQuestion(label, paymentMethod) {
  if (paymentMethod === "paypal") return `Buy ${label}? You approve the payment on PayPal's site; the minutes are added to the practice's balance once it is confirmed.`;
  if (paymentMethod === "direct_debit") return `Buy ${label}? It is charged to the practice's Direct Debit; the minutes are added to the practice's balance once the payment is confirmed.`;
  return `Buy ${label}? The minutes are added to the practice's balance once the payment is confirmed.`;
}

// One idempotency key per bundle until the server has answered: a double click, or a retry
// after a network failure or a server error, sends the same key, so nothing is bought twice.
// A purchase still being confirmed keeps its key too: asking again shows the same one.
const attempts = new Map();

function keyFor(minutes) {
  if (!attempts.has(minutes)) attempts.set(minutes, `buy-${crypto.randomUUID()}`);
  return attempts.get(minutes);
}

/**
 * Buy the bundle of `minutes`. Resolves with the server's reply; a purchase to approve on
 * PayPal's site leaves the page for it (`reply.leaving` is then true).
 * @returns {Promise<PurchaseReply & {leaving?: boolean}>}
 */
export async function buyBundle(minutes, { signInAgain = true } = {}) {
  let reply;
  try {
    reply = await api("POST", "/api/minutes/purchases", { bundle_minutes: minutes, idempotency_key: keyFor(minutes) }, { signInAgain });
  } catch (error) {
    if (error.status && error.status < 500) attempts.delete(minutes); // refused: nothing bought
    throw error;
  }
  const purchase = reply.purchase;
  if (purchase.status === "credited" || purchase.status === "failed") attempts.delete(minutes);
  if (purchase.status === "awaiting_approval" && purchase.approve_url) {
    location.assign(purchase.approve_url); // PayPal: approve there, come back to the dashboard
    return { ...reply, leaving: true };
  }
  return reply;
}

/**
 * What the answer means, in a sentence, and how it looks: "success" (the minutes are
 * there), "failure" (nothing was charged) or "warning" (still being confirmed).
 * @param {PurchaseReply & {leaving?: boolean}} reply
 */
export function purchaseOutcome(reply) {
  const purchase = reply.purchase;
  if (reply.leaving) return { text: "Taking you to PayPal…", tone: "warning" };
  if (purchase.status === "credited") return { text: `${purchase.bundle_minutes} minutes added. The balance is now ${reply.balance_display}.`, tone: "success" };
  if (purchase.status === "failed") return { text: `The payment failed: ${purchase.failure_reason || "no reason was given"}.`, tone: "failure" };
  return { text: reply.message || "The payment is being confirmed.", tone: "warning" };
}
