"""Adapters for e-mail enquiries (SMTP, IMAP), notifications (SMTP, Twilio SMS) and Twilio voice."""
