//! SIP (RFC 3261), sans-IO: messages, transactions, dialogs and the user agent for outbound calls.
