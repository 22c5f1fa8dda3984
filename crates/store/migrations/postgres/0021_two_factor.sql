-- Two-factor sign-in. The TOTP secret (base32) of an account that has it;
-- NULL for none. It cannot be hashed: every code is computed from it.
ALTER TABLE users ADD COLUMN totp_secret TEXT;
-- The last time step a code was accepted for: a code is good once.
ALTER TABLE users ADD COLUMN totp_step BIGINT;
-- The recovery codes not yet used, as a JSON array of their SHA-256.
ALTER TABLE users ADD COLUMN recovery_codes TEXT;
-- A password sign-in waiting for its second factor: the SHA-256 of the
-- browser's challenge cookie, and when it expires.
ALTER TABLE users ADD COLUMN challenge_hash TEXT;
ALTER TABLE users ADD COLUMN challenge_expires_at BIGINT;
CREATE UNIQUE INDEX users_challenge ON users (challenge_hash);
