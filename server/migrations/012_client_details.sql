-- A client's date of birth (to tell two clients of one name apart at the desk) and the
-- channel they prefer for their links and reminders.
ALTER TABLE clients
    ADD COLUMN date_of_birth date CHECK (date_of_birth IS NULL OR date_of_birth >= DATE '1900-01-01'),
    ADD COLUMN preferred_channel text NOT NULL DEFAULT 'email'
        CHECK (preferred_channel IN ('email', 'sms'));
