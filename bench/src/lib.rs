//! Outdial's bench tools, behind `outdial bench`: the load generator (`load`), the
//! application server it and the quickstart use (`appserver`), and the VoiceXML applications
//! they carry (`apps`).

pub mod apps;
pub mod appserver;
pub mod cli;
pub mod load;
