//! ALBERT in burn: the model, its pretraining losses, the LAMB optimizer, Hugging Face
//! import/export, and the flat gradient buffer the all-reduce exchanges.
//!
//! Not implemented yet (issue "ALBERT in burn"). Invariants it will keep:
//! - initialisation is a pure function of the seed, identical on every backend and process;
//! - parameter ids are derived from parameter paths, so every process agrees on them;
//! - the gradient layout (names, shapes, offsets) has a fingerprint peers compare before
//!   exchanging bytes.
