//! Outdial's VoiceXML 2.1 interpreter, sans-IO.

pub mod script;
