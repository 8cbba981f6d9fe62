//! Load generator and callee simulator.
