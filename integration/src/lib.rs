//! Test machinery for Portico: an echo backend compatible with the Gateway API conformance
//! echo server, a harness that runs the real `portico` binary and real Envoy, and the
//! conformance runner over `../shared/conformance`.

pub mod codec;
pub mod conformance;
pub mod echo;
pub mod fake_kube;
pub mod harness;
pub mod load;
pub mod propagation;
