//! Creating and checking a ring: the setup flags, the probe, and advice when the kernel
//! refuses.

use io_uring::{IoUring, Probe, opcode};

use super::buffers::BufRing;

/// Build a ring with the flags the loop needs.
pub(super) fn build_ring(sq_entries: u32, cq_entries: u32) -> Result<IoUring, String> {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(cq_entries)
        .build(sq_entries)
        .map_err(|error| explain_setup_error(&error))
}

/// Turn the kernel's refusal into advice.
fn explain_setup_error(error: &std::io::Error) -> String {
    match error.raw_os_error() {
        Some(libc::EPERM) => "io_uring refused (EPERM): kernel.io_uring_disabled is set, or a \
                              seccomp profile (Docker's default) blocks io_uring"
            .to_owned(),
        Some(libc::ENOSYS) => "io_uring is missing (ENOSYS): the kernel lacks it, or a seccomp \
                               profile hides it"
            .to_owned(),
        Some(libc::EINVAL) => "the kernel refused IORING_SETUP_SINGLE_ISSUER | \
                               IORING_SETUP_DEFER_TASKRUN (EINVAL): Linux 6.1 or later is needed"
            .to_owned(),
        Some(libc::ENOMEM) => "io_uring could not lock its memory (ENOMEM): raise `ulimit -l` \
                               (RLIMIT_MEMLOCK)"
            .to_owned(),
        _ => format!("creating an io_uring failed: {error}"),
    }
}

/// Check the opcodes and features the backend uses. Multishot `RecvMsg` (Linux 6.0) has
/// no opcode of its own: a ring accepting DEFER_TASKRUN (6.1) implies it.
pub(super) fn check_ring(ring: &IoUring) -> Result<(), String> {
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|error| format!("probing io_uring opcodes failed: {error}"))?;
    let needed = [
        (opcode::RecvMsgMulti::CODE, "RecvMsg (multishot)"),
        (opcode::SendMsg::CODE, "SendMsg"),
        (opcode::ProvideBuffers::CODE, "ProvideBuffers"),
        (opcode::AsyncCancel::CODE, "AsyncCancel"),
        (opcode::PollAdd::CODE, "PollAdd"),
    ];
    for (code, name) in needed {
        if !probe.is_supported(code) {
            return Err(format!("the kernel's io_uring lacks the {name} operation"));
        }
    }
    if !ring.params().is_feature_ext_arg() {
        return Err("the kernel's io_uring lacks IORING_FEAT_EXT_ARG (Linux 5.11)".to_owned());
    }
    Ok(())
}

/// Whether the io_uring backend can run here, and if not, why.
pub(crate) fn probe() -> Result<(), String> {
    let ring = build_ring(8, 16)?;
    check_ring(&ring)?;
    let bufs =
        BufRing::new(1, 64).map_err(|error| format!("allocating a buffer ring failed: {error}"))?;
    bufs.register(&ring).map_err(|error| {
        format!("registering a provided-buffer ring failed (Linux 5.19 needed): {error}")
    })?;
    // Dropping the ring unregisters the buffer ring; `bufs` is dropped after it.
    drop(ring);
    drop(bufs);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_errors_give_advice() {
        let eperm = explain_setup_error(&std::io::Error::from_raw_os_error(libc::EPERM));
        assert!(eperm.contains("seccomp"), "{eperm}");
        let einval = explain_setup_error(&std::io::Error::from_raw_os_error(libc::EINVAL));
        assert!(einval.contains("6.1"), "{einval}");
        let enomem = explain_setup_error(&std::io::Error::from_raw_os_error(libc::ENOMEM));
        assert!(enomem.contains("ulimit -l"), "{enomem}");
    }
}
