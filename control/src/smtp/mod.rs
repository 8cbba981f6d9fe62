//! The SMTP gateway: call requests by e-mail.
//!
//! - [`delivery`]: the seam between the SMTP session (the wire) and the pipeline (what a
//!   message means): the session asks a [`Delivery`] whether a recipient exists, who an
//!   `AUTH` identity is, and finally hands it the whole message and sends the [`Reply`] it
//!   answers. The e-mail intake (`intake::email`) implements it.

pub mod delivery;

pub use delivery::{Delivery, DeliveryFuture, Envelope, Reply};
