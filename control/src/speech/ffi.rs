//! The few PocketSphinx 5prealpha (Debian 12 `libpocketsphinx3`) and SphinxBase functions the
//! engine calls, declared by hand.
//!
//! Why not the `pocketsphinx` 0.6 / `pocketsphinx-sys` 0.5 crates: the safe crate exposes no
//! JSGF-string search (`ps_set_jsgf_string`), no named searches (`ps_set_search`,
//! `ps_unset_search`) and no way to silence the
//! library's stderr logging, which the engine needs; the sys crate would bring bindings for
//! hundreds of functions to call fifteen. These declarations follow
//! `/usr/include/pocketsphinx/pocketsphinx.h`, `ps_search.h` and SphinxBase's `cmd_ln.h`,
//! `err.h` (all `int32` are C `int`).
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void};

/// `ps_decoder_t`.
#[repr(C)]
pub(crate) struct PsDecoder {
    _private: [u8; 0],
}
/// `cmd_ln_t`.
#[repr(C)]
pub(crate) struct CmdLn {
    _private: [u8; 0],
}
/// `ps_seg_t`.
#[repr(C)]
pub(crate) struct PsSeg {
    _private: [u8; 0],
}
/// `arg_t`.
#[repr(C)]
pub(crate) struct Arg {
    _private: [u8; 0],
}
#[link(name = "pocketsphinx")]
unsafe extern "C" {
    pub(crate) fn ps_args() -> *const Arg;
    pub(crate) fn ps_init(config: *mut CmdLn) -> *mut PsDecoder;
    pub(crate) fn ps_free(ps: *mut PsDecoder) -> c_int;
    pub(crate) fn ps_set_jsgf_string(
        ps: *mut PsDecoder,
        name: *const c_char,
        jsgf: *const c_char,
    ) -> c_int;
    pub(crate) fn ps_set_search(ps: *mut PsDecoder, name: *const c_char) -> c_int;
    pub(crate) fn ps_unset_search(ps: *mut PsDecoder, name: *const c_char) -> c_int;
    pub(crate) fn ps_start_utt(ps: *mut PsDecoder) -> c_int;
    pub(crate) fn ps_process_raw(
        ps: *mut PsDecoder,
        data: *const i16,
        n_samples: usize,
        no_search: c_int,
        full_utt: c_int,
    ) -> c_int;
    pub(crate) fn ps_end_utt(ps: *mut PsDecoder) -> c_int;
    pub(crate) fn ps_get_hyp(ps: *mut PsDecoder, out_best_score: *mut c_int) -> *const c_char;
    pub(crate) fn ps_seg_iter(ps: *mut PsDecoder) -> *mut PsSeg;
    pub(crate) fn ps_seg_word(seg: *mut PsSeg) -> *const c_char;
    pub(crate) fn ps_seg_frames(seg: *mut PsSeg, out_sf: *mut c_int, out_ef: *mut c_int);
    pub(crate) fn ps_seg_next(seg: *mut PsSeg) -> *mut PsSeg;
    pub(crate) fn ps_seg_prob(
        seg: *mut PsSeg,
        out_ascr: *mut c_int,
        out_lscr: *mut c_int,
        out_lback: *mut c_int,
    ) -> c_int;
    pub(crate) fn ps_get_n_frames(ps: *mut PsDecoder) -> c_int;
}

#[link(name = "sphinxbase")]
unsafe extern "C" {
    pub(crate) fn cmd_ln_parse_r(
        inout: *mut CmdLn,
        defn: *const Arg,
        argc: c_int,
        argv: *mut *mut c_char,
        strict: c_int,
    ) -> *mut CmdLn;
    pub(crate) fn cmd_ln_free_r(cmdln: *mut CmdLn) -> c_int;
    /// `NULL` turns the library's logging off (process-wide).
    pub(crate) fn err_set_logfp(stream: *mut c_void);
}
