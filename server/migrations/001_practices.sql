-- Practices, their staff, clients and appointment types.
CREATE TABLE practices (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    phone           text CHECK (phone IS NULL OR length(phone) BETWEEN 1 AND 40),
    timezone        text NOT NULL DEFAULT 'Europe/London',
    -- VAT in basis points: 2000 = 20%. Integer so that money stays integer.
    vat_rate_bp     integer NOT NULL DEFAULT 2000 CHECK (vat_rate_bp BETWEEN 0 AND 10000),
    payment_method  text NOT NULL DEFAULT 'direct_debit'
                    CHECK (payment_method IN ('direct_debit', 'paypal')),
    reminder_offset_minutes integer NOT NULL DEFAULT 1440
                    CHECK (reminder_offset_minutes BETWEEN 0 AND 20160),
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    practice_id     uuid NOT NULL REFERENCES practices (id) ON DELETE CASCADE,
    email           text NOT NULL CHECK (email = lower(email) AND position('@' IN email) > 1),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    password_hash   text NOT NULL,
    roles           text[] NOT NULL CHECK (
                        cardinality(roles) >= 1
                        AND roles <@ ARRAY['site_admin', 'clinician', 'receptionist']::text[]),
    active          boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (email);
CREATE INDEX users_practice_idx ON users (practice_id);

CREATE TABLE clients (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    practice_id     uuid NOT NULL REFERENCES practices (id) ON DELETE CASCADE,
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    email           text CHECK (email IS NULL OR position('@' IN email) > 1),
    phone           text CHECK (phone IS NULL OR length(phone) BETWEEN 1 AND 40),
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX clients_practice_idx ON clients (practice_id, lower(name));

CREATE TABLE appointment_types (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    practice_id     uuid NOT NULL REFERENCES practices (id) ON DELETE CASCADE,
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    duration_minutes integer NOT NULL CHECK (duration_minutes BETWEEN 5 AND 480),
    is_video        boolean NOT NULL DEFAULT false,
    active          boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX appointment_types_practice_idx ON appointment_types (practice_id);
