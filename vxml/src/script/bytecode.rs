//! The engine's own scripts (`bootstrap.js`, `dom.js`) as precompiled bytecode.
//!
//! Evaluated from source, every function of a script keeps its source text (for
//! `Function.prototype.toString`) and its line table in each context that runs it: memory per
//! session. Each script is compiled once per process instead, serialised without source text or
//! debug information (`JS_WRITE_OBJ_STRIP_SOURCE | JS_WRITE_OBJ_STRIP_DEBUG`), and each context
//! reads that bytecode (`JS_ReadObject`) and runs it: 5.5 KiB less per session for the bootstrap,
//! and no parse at session start. Application code (`<script>`, expressions) is still evaluated
//! from source and keeps its text.
//!
//! Bytecode is specific to the QuickJS build that wrote it; a [`Bytecode`] is only ever made by
//! [`Bytecode::compile`] in this process, so it is always read by the same build.

// rquickjs has no safe API for compiling a script to bytecode or running bytecode.
#![allow(unsafe_code)]

use std::ffi::CString;

use rquickjs::{Ctx, qjs};

/// A script compiled by this process's QuickJS, without source text or debug information.
#[derive(Debug)]
pub(super) struct Bytecode(Vec<u8>);

/// Whether `value` is QuickJS's exception marker (the exception itself is pending in the
/// context, for `Ctx::catch`).
fn is_exception(value: qjs::JSValue) -> bool {
    // SAFETY: a tag test on a value, no dereference.
    unsafe { qjs::JS_IsException(value) }
}

impl Bytecode {
    /// Compiles `source` as sloppy global code in `ctx` (without running it) and serialises it.
    pub(super) fn compile(ctx: &Ctx<'_>, source: &str) -> rquickjs::Result<Self> {
        let text = CString::new(source)?;
        let raw = ctx.as_raw().as_ptr();
        let flags = qjs::JS_EVAL_TYPE_GLOBAL | qjs::JS_EVAL_FLAG_COMPILE_ONLY;
        // SAFETY: `raw` is the live context `ctx` borrows (its runtime locked while we hold
        // it); `text` is NUL-terminated after `text.as_bytes().len()` bytes, as JS_Eval needs.
        let function = unsafe {
            qjs::JS_Eval(
                raw,
                text.as_ptr(),
                text.as_bytes().len() as qjs::size_t,
                c"vxml".as_ptr(),
                flags as i32,
            )
        };
        if is_exception(function) {
            return Err(rquickjs::Error::Exception);
        }
        let flags = qjs::JS_WRITE_OBJ_BYTECODE
            | qjs::JS_WRITE_OBJ_STRIP_SOURCE
            | qjs::JS_WRITE_OBJ_STRIP_DEBUG;
        let mut len: qjs::size_t = 0;
        // SAFETY: `function` is the compiled script JS_Eval returned, owned here and freed
        // right after; JS_WriteObject writes `len` and returns a buffer from `ctx`'s allocator
        // (null with an exception pending on failure).
        let buffer = unsafe {
            let buffer = qjs::JS_WriteObject(raw, &mut len, function, flags as i32);
            qjs::JS_FreeValue(raw, function);
            buffer
        };
        if buffer.is_null() {
            return Err(rquickjs::Error::Exception);
        }
        let len = usize::try_from(len).unwrap_or(0);
        // SAFETY: JS_WriteObject returned `len` initialised bytes at `buffer`, which we copy
        // and then give back to the allocator they came from.
        let bytes = unsafe {
            let bytes = std::slice::from_raw_parts(buffer, len).to_vec();
            qjs::js_free(raw, buffer.cast());
            bytes
        };
        Ok(Self(bytes))
    }

    /// Reads the bytecode into `ctx` and runs it as global code, discarding its result.
    pub(super) fn run(&self, ctx: &Ctx<'_>) -> rquickjs::Result<()> {
        let raw = ctx.as_raw().as_ptr();
        let bytes = &self.0;
        // SAFETY: `raw` is the live context `ctx` borrows; `bytes` were written by
        // JS_WriteObject of this same QuickJS build ([`Self::compile`] is the only
        // constructor), and JS_ReadObject copies what it keeps (no ROM flag).
        let function = unsafe {
            qjs::JS_ReadObject(
                raw,
                bytes.as_ptr(),
                bytes.len() as qjs::size_t,
                qjs::JS_READ_OBJ_BYTECODE as i32,
            )
        };
        if is_exception(function) {
            return Err(rquickjs::Error::Exception);
        }
        // SAFETY: JS_EvalFunction takes ownership of `function`; we own its result and free it.
        let result = unsafe { qjs::JS_EvalFunction(raw, function) };
        if is_exception(result) {
            return Err(rquickjs::Error::Exception);
        }
        // SAFETY: `result` is owned here and not used again.
        unsafe { qjs::JS_FreeValue(raw, result) };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rquickjs::{Context, Runtime};

    #[test]
    fn compiled_code_runs_in_other_contexts_without_its_source() {
        let runtime = Runtime::new().unwrap();
        let first = Context::full(&runtime).unwrap();
        let code = first
            .with(|ctx| {
                Bytecode::compile(
                    &ctx,
                    "var seen = 0; function add(n) { seen += n; return seen; }",
                )
            })
            .unwrap();
        for context in [first, Context::full(&runtime).unwrap()] {
            context.with(|ctx| {
                // Compiling did not run it.
                assert!(!ctx.globals().contains_key("add").unwrap());
                code.run(&ctx).unwrap();
                assert_eq!(ctx.eval::<i32, _>("add(2); add(3)").unwrap(), 5);
                let text: String = ctx.eval("add.toString()").unwrap();
                assert!(!text.contains("seen +="), "source was stripped: {text}");
            });
        }
    }

    #[test]
    fn errors_are_exceptions_pending_in_the_context() {
        let runtime = Runtime::new().unwrap();
        let context = Context::full(&runtime).unwrap();
        context.with(|ctx| {
            assert!(
                Bytecode::compile(&ctx, "var = 1")
                    .unwrap_err()
                    .is_exception()
            );
            let thrown = ctx.catch();
            let name: Option<String> = thrown.as_object().and_then(|e| e.get("name").ok());
            assert_eq!(name.as_deref(), Some("SyntaxError"), "{thrown:?}");
            let throws = Bytecode::compile(&ctx, "throw new TypeError('boom')").unwrap();
            assert!(throws.run(&ctx).unwrap_err().is_exception());
            let thrown = ctx.catch();
            let message = thrown.as_exception().and_then(|e| e.message());
            assert_eq!(message.as_deref(), Some("boom"));
        });
    }
}
