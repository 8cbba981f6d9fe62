//! RTP (RFC 3550) media sessions, RFC 4733 telephone-events and G.711, sans-IO.
