//! The few PocketSphinx 5prealpha (Debian 12 `libpocketsphinx3`) and SphinxBase functions the
//! engine calls, declared by hand and loaded when speech is first used.
//!
//! Why not the `pocketsphinx` 0.6 / `pocketsphinx-sys` 0.5 crates: the safe crate exposes no
//! JSGF-string search (`ps_set_jsgf_string`), no named searches (`ps_set_search`,
//! `ps_unset_search`) and no way to silence the library's stderr logging, which the engine
//! needs; the sys crate would bring bindings for hundreds of functions to call twenty.
//! These declarations follow `/usr/include/pocketsphinx/pocketsphinx.h`, `ps_search.h` and
//! SphinxBase's `cmd_ln.h`, `err.h` (all `int32` are C `int`).
//!
//! Why loaded at run time (`libloading`) instead of linked: speech is an optional capability.
//! `outdial` builds and runs on a machine without PocketSphinx (no `-dev` package needed to
//! build); where the libraries are missing, [`load`] says what to install and every wrapper
//! below returns its failure value (a null pointer, `-1`), which the engine turns into an
//! error, never a crash.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void};
use std::sync::OnceLock;

use libloading::Library;

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

/// The shared objects, by the names Debian 12's runtime packages install, then the `-dev`
/// names.
const POCKETSPHINX: [&str; 2] = ["libpocketsphinx.so.3", "libpocketsphinx.so"];
const SPHINXBASE: [&str; 2] = ["libsphinxbase.so.3", "libsphinxbase.so"];

macro_rules! library_api {
    ($(
        $(#[$doc:meta])*
        $lib:ident fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? = $failure:expr;
    )*) => {
        /// The functions, resolved once; the libraries stay loaded for the process's life.
        struct Api {
            $($name: unsafe extern "C" fn($($ty),*) $(-> $ret)?,)*
            _libraries: (Library, Library),
        }

        impl Api {
            fn load() -> Result<Self, String> {
                let pocketsphinx = open(&POCKETSPHINX)?;
                let sphinxbase = open(&SPHINXBASE)?;
                Ok(Self {
                    $($name: {
                        let library = library_api!(@pick $lib, pocketsphinx, sphinxbase);
                        // SAFETY: the type is the C declaration of the symbol named (see the
                        // module doc); the pointer is used only while `_libraries` keeps the
                        // library loaded, which is for the process's life.
                        let symbol = unsafe {
                            library.get::<unsafe extern "C" fn($($ty),*) $(-> $ret)?>(
                                concat!(stringify!($name), "\0").as_bytes(),
                            )
                        };
                        *symbol.map_err(|e| format!("{} lacks {}: {e}", stringify!($lib), stringify!($name)))?
                    },)*
                    _libraries: (pocketsphinx, sphinxbase),
                })
            }
        }

        $(
            $(#[$doc])*
            /// Returns the failure value when the libraries are not loaded.
            pub(crate) unsafe fn $name($($arg: $ty),*) $(-> $ret)? {
                match api() {
                    // SAFETY: the caller upholds the C function's contract.
                    Some(api) => unsafe { (api.$name)($($arg),*) },
                    None => $failure,
                }
            }
        )*
    };
    (@pick pocketsphinx, $ps:ident, $sb:ident) => { &$ps };
    (@pick sphinxbase, $ps:ident, $sb:ident) => { &$sb };
}

library_api! {
    pocketsphinx fn ps_args() -> *const Arg = std::ptr::null();
    pocketsphinx fn ps_init(config: *mut CmdLn) -> *mut PsDecoder = std::ptr::null_mut();
    pocketsphinx fn ps_free(ps: *mut PsDecoder) -> c_int = -1;
    pocketsphinx fn ps_set_jsgf_string(ps: *mut PsDecoder, name: *const c_char, jsgf: *const c_char) -> c_int = -1;
    pocketsphinx fn ps_set_search(ps: *mut PsDecoder, name: *const c_char) -> c_int = -1;
    pocketsphinx fn ps_unset_search(ps: *mut PsDecoder, name: *const c_char) -> c_int = -1;
    pocketsphinx fn ps_start_utt(ps: *mut PsDecoder) -> c_int = -1;
    pocketsphinx fn ps_process_raw(ps: *mut PsDecoder, data: *const i16, n_samples: usize, no_search: c_int, full_utt: c_int) -> c_int = -1;
    pocketsphinx fn ps_end_utt(ps: *mut PsDecoder) -> c_int = -1;
    pocketsphinx fn ps_get_hyp(ps: *mut PsDecoder, out_best_score: *mut c_int) -> *const c_char = std::ptr::null();
    pocketsphinx fn ps_seg_iter(ps: *mut PsDecoder) -> *mut PsSeg = std::ptr::null_mut();
    pocketsphinx fn ps_seg_word(seg: *mut PsSeg) -> *const c_char = std::ptr::null();
    pocketsphinx fn ps_seg_frames(seg: *mut PsSeg, out_sf: *mut c_int, out_ef: *mut c_int) = ();
    pocketsphinx fn ps_seg_next(seg: *mut PsSeg) -> *mut PsSeg = std::ptr::null_mut();
    pocketsphinx fn ps_seg_prob(seg: *mut PsSeg, out_ascr: *mut c_int, out_lscr: *mut c_int, out_lback: *mut c_int) -> c_int = 0;
    pocketsphinx fn ps_get_n_frames(ps: *mut PsDecoder) -> c_int = 0;
    sphinxbase fn cmd_ln_parse_r(inout: *mut CmdLn, defn: *const Arg, argc: c_int, argv: *mut *mut c_char, strict: c_int) -> *mut CmdLn = std::ptr::null_mut();
    sphinxbase fn cmd_ln_free_r(cmdln: *mut CmdLn) -> c_int = -1;
    /// `NULL` turns the library's logging off (process-wide).
    sphinxbase fn err_set_logfp(stream: *mut c_void) = ();
}

static API: OnceLock<Result<Api, String>> = OnceLock::new();

fn api() -> Option<&'static Api> {
    API.get_or_init(Api::load).as_ref().ok()
}

/// Loads the libraries (once); why they cannot be loaded, saying what to install.
pub(crate) fn load() -> Result<(), String> {
    API.get_or_init(Api::load)
        .as_ref()
        .map(|_| ())
        .map_err(Clone::clone)
}

fn open(names: &[&str]) -> Result<Library, String> {
    let mut last = String::new();
    for name in names {
        // SAFETY: loading runs the library's initialisers; PocketSphinx's and SphinxBase's
        // only set up their own state.
        match unsafe { Library::new(name) } {
            Ok(library) => return Ok(library),
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!(
        "cannot load {} ({last}): install the `libpocketsphinx3` and `pocketsphinx-en-us` \
         packages (apt-get install pocketsphinx-en-us libpocketsphinx3), or set \
         [speech] enabled = false",
        names.first().copied().unwrap_or_default()
    ))
}
