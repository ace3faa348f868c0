-- Video minutes: one balance per practice, the ledger that explains it, and purchases.
--
-- Exactly-once crediting is enforced here, not only in the application:
--   * a purchase attempt is unique per (practice, client idempotency key): a double click
--     finds the first attempt instead of making a second;
--   * a purchase has at most one 'purchase' entry and one 'reversal' entry
--     (unique (purchase_id, kind)): a replayed webhook or a return racing a webhook cannot
--     credit twice even if the state machine were bypassed;
--   * a meter reading is recorded at most once (unique (call_id, meter_sequence)).

-- The balance, in signed seconds (R-M1). It may go negative: calls are never cut off (R-M9).
CREATE TABLE wallets (
    practice_id      uuid PRIMARY KEY REFERENCES practices (id) ON DELETE CASCADE,
    balance_seconds  bigint NOT NULL DEFAULT 0,
    -- The practice's Direct Debit mandate at GoCardless (its subscription's bank account).
    gocardless_mandate_id text CHECK (
        gocardless_mandate_id IS NULL OR gocardless_mandate_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE minute_purchases (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    practice_id         uuid NOT NULL REFERENCES practices (id) ON DELETE CASCADE,
    requested_by        uuid NOT NULL REFERENCES users (id),
    idempotency_key     text NOT NULL CHECK (length(idempotency_key) BETWEEN 8 AND 100),
    bundle_minutes      integer NOT NULL CHECK (bundle_minutes IN (300, 600, 1000, 2000, 5000)),
    seconds             bigint NOT NULL CHECK (seconds = bundle_minutes * 60),
    vat_rate_bp         integer NOT NULL CHECK (vat_rate_bp BETWEEN 0 AND 10000),
    net_pence           integer NOT NULL CHECK (net_pence > 0),
    vat_pence           integer NOT NULL CHECK (vat_pence >= 0),
    gross_pence         integer NOT NULL CHECK (gross_pence = net_pence + vat_pence),
    method              text NOT NULL CHECK (method IN ('direct_debit', 'paypal')),
    provider            text NOT NULL CHECK (provider IN ('sandbox', 'gocardless', 'paypal')),
    -- GoCardless payment id, PayPal order id, or the sandbox's own id.
    provider_payment_id text,
    -- PayPal capture id (refund and reversal webhooks name the capture).
    provider_capture_id text,
    provider_status     text,
    approve_url         text,
    status              text NOT NULL DEFAULT 'pending' CHECK (
                            status IN ('pending', 'awaiting_approval', 'credited', 'failed',
                                       'reversed')),
    failure_reason      text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    credited_at         timestamptz,
    reversed_at         timestamptz,
    CHECK ((status IN ('credited', 'reversed')) = (credited_at IS NOT NULL)),
    CHECK ((status = 'reversed') = (reversed_at IS NOT NULL))
);
CREATE UNIQUE INDEX minute_purchases_one_per_attempt
    ON minute_purchases (practice_id, idempotency_key);
CREATE UNIQUE INDEX minute_purchases_provider_payment
    ON minute_purchases (provider, provider_payment_id) WHERE provider_payment_id IS NOT NULL;
CREATE UNIQUE INDEX minute_purchases_provider_capture
    ON minute_purchases (provider, provider_capture_id) WHERE provider_capture_id IS NOT NULL;
CREATE INDEX minute_purchases_by_practice ON minute_purchases (practice_id, created_at DESC);
CREATE INDEX minute_purchases_unsettled
    ON minute_purchases (created_at) WHERE status IN ('pending', 'awaiting_approval');

CREATE TABLE ledger_entries (
    id              bigserial PRIMARY KEY,
    practice_id     uuid NOT NULL REFERENCES practices (id) ON DELETE CASCADE,
    kind            text NOT NULL CHECK (kind IN ('purchase', 'usage', 'reversal', 'adjustment')),
    seconds         bigint NOT NULL,
    purchase_id     uuid REFERENCES minute_purchases (id),
    call_id         uuid REFERENCES calls (id),
    clinician_id    uuid REFERENCES users (id),
    meter_sequence  bigint,
    note            text CHECK (note IS NULL OR length(note) <= 500),
    created_by      uuid REFERENCES users (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- Each kind carries exactly what identifies it, with the sign it must have.
    CHECK (kind <> 'purchase' OR (purchase_id IS NOT NULL AND seconds > 0)),
    CHECK (kind <> 'reversal' OR (purchase_id IS NOT NULL AND seconds < 0)),
    CHECK (kind <> 'usage' OR (call_id IS NOT NULL AND meter_sequence IS NOT NULL
                               AND seconds <= 0)),
    CHECK (kind <> 'adjustment' OR (note IS NOT NULL AND seconds <> 0)),
    CHECK ((kind IN ('purchase', 'reversal')) = (purchase_id IS NOT NULL))
);
CREATE UNIQUE INDEX ledger_entries_once_per_purchase
    ON ledger_entries (purchase_id, kind) WHERE purchase_id IS NOT NULL;
CREATE UNIQUE INDEX ledger_entries_once_per_reading
    ON ledger_entries (call_id, meter_sequence) WHERE kind = 'usage';
CREATE INDEX ledger_entries_by_practice ON ledger_entries (practice_id, created_at);

-- Provider callbacks already applied, so a replay is acknowledged without being re-applied.
-- (The ledger's unique indexes are the real guarantee; this keeps the audit trail.)
CREATE TABLE payment_webhook_events (
    provider        text NOT NULL CHECK (provider IN ('gocardless', 'paypal')),
    event_id        text NOT NULL,
    purchase_id     uuid REFERENCES minute_purchases (id),
    action          text NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, event_id)
);

-- Every existing practice starts with an empty wallet; new ones get theirs on first use.
INSERT INTO wallets (practice_id) SELECT id FROM practices ON CONFLICT DO NOTHING;
