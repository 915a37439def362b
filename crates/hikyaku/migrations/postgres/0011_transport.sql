-- How an account sends: SMTP with XOAUTH2 (the default, as before), the
-- Microsoft Graph sendMail API, or the Gmail API.
ALTER TABLE accounts ADD COLUMN transport TEXT NOT NULL DEFAULT 'smtp';
