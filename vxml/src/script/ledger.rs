//! Exact memory accounting per session inside a shared QuickJS runtime.
//!
//! QuickJS counts memory per runtime, but sessions share runtimes ([`super::engine`]); with
//! the runtime's own limit, one session's runaway allocation would make a stranger's next
//! allocation fail. Each runtime therefore allocates through a [`SessionAllocator`]: every
//! block it hands QuickJS starts with a [`HEADER_BYTES`] header recording the block's size and
//! the account it is charged to (a session's slot and the slot's generation). The runtime lock
//! serialises evaluation, so the session about to use the runtime names itself
//! ([`Ledger::charge_to`], a thread-local set for the length of one evaluation) and
//!
//! - an allocation is charged to that session, and fails (QuickJS throws out-of-memory in that
//!   session's code) if it would take the session past its own limit;
//! - a free is credited to the owner recorded in the header, whoever's evaluation (or cycle
//!   collection) releases it;
//! - a reallocation moves the block to the current session: whoever makes a block grow pays for
//!   all of it (this is how shared tables, such as the atom array, are charged to the session
//!   whose new names made them grow);
//! - outside any session (runtime creation, collections from the host) the runtime's own
//!   account is charged, limited to [`Ledger::new`]'s `runtime_limit`;
//! - when a session ends its slot closes: what the session still owned (cycles awaiting the
//!   collector, arenas other sessions still use) becomes orphaned, charged to nobody's limit,
//!   and is credited as it is freed. The slot's generation changes, so the next session in it
//!   is never credited for the old one's blocks.
//!
//! Granularity: QuickJS carves blocks of up to 512 bytes out of 4 KiB size-class arenas it
//! shares between the contexts of a runtime; the allocator sees the arena, which is charged to
//! the session whose allocation opened it, so small objects are accounted to within one
//! partly used arena per size class. Larger blocks (strings, arrays' element storage,
//! bytecode) are charged exactly.

// The `Allocator` trait rquickjs calls from C is unsafe: it hands out raw memory.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rquickjs::allocator::Allocator;

/// Bytes in front of every block the allocator hands QuickJS: its size and its owner.
pub const HEADER_BYTES: usize = size_of::<Header>();

/// Alignment QuickJS needs (its largest scalar, `u64`/`double`).
const ALIGN: usize = 8;

/// The account a block is charged to: a slot of the ledger and the slot's generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct Owner {
    slot: u32,
    generation: u32,
}

impl Owner {
    /// The runtime's own account (slot 0, never closed).
    const RUNTIME: Self = Self {
        slot: 0,
        generation: 0,
    };
}

/// What precedes each block: the payload size as allocated and its owner.
#[derive(Clone, Copy)]
#[repr(C)]
struct Header {
    size: usize,
    owner: Owner,
}

/// Memory charged to one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionMemory {
    /// Bytes charged (headers included; the system allocator's own overhead excluded).
    pub bytes: usize,
    /// Blocks charged (4 KiB arenas and large blocks; each carries a [`HEADER_BYTES`] header).
    pub blocks: usize,
    /// The most `bytes` may reach.
    pub limit: usize,
}

/// Memory of a whole runtime, by account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LedgerSummary {
    /// Bytes charged to live sessions.
    pub session_bytes: usize,
    /// Bytes charged to the runtime itself (its tables; work done outside any session).
    pub runtime_bytes: usize,
    /// Bytes ended sessions still own until freed (garbage awaiting the cycle collector).
    pub orphan_bytes: usize,
    /// Blocks in all accounts.
    pub blocks: usize,
    /// Live sessions.
    pub sessions: usize,
}

#[derive(Debug, Clone, Copy)]
struct Account {
    bytes: usize,
    blocks: usize,
    limit: usize,
    generation: u32,
    open: bool,
    /// An allocation was refused since [`Ledger::clear_refused`].
    refused: bool,
}

#[derive(Debug)]
struct Book {
    /// Slot 0 is the runtime's own account.
    accounts: Vec<Account>,
    /// Closed slots, reused by the next session.
    closed: Vec<u32>,
    orphan_bytes: usize,
    orphan_blocks: usize,
}

impl Book {
    /// The open account `owner` names, or `None` when its session has ended.
    fn open_account(&mut self, owner: Owner) -> Option<&mut Account> {
        let index = usize::try_from(owner.slot).ok()?;
        self.accounts
            .get_mut(index)
            .filter(|a| a.open && a.generation == owner.generation)
    }

    /// Charges `bytes` (one block) to `owner` if its limit allows, or to the runtime if
    /// `owner`'s session has ended; returns the account charged.
    fn charge(&mut self, owner: Owner, bytes: usize) -> Option<Owner> {
        let (owner, account) = match self.open_account(owner) {
            Some(account) => (owner, account),
            None => (Owner::RUNTIME, self.accounts.first_mut()?),
        };
        match account.bytes.checked_add(bytes) {
            Some(total) if total <= account.limit => {
                account.bytes = total;
                account.blocks += 1;
                Some(owner)
            }
            _ => {
                account.refused = true;
                None
            }
        }
    }

    /// Undoes [`Self::credit`] of the same block, limits notwithstanding.
    fn restore(&mut self, owner: Owner, bytes: usize) {
        if let Some(account) = self.open_account(owner) {
            account.bytes += bytes;
            account.blocks += 1;
        } else {
            self.orphan_bytes += bytes;
            self.orphan_blocks += 1;
        }
    }

    /// Credits `bytes` (one block) to `owner`, or to the orphans if its session has ended.
    fn credit(&mut self, owner: Owner, bytes: usize) {
        if let Some(account) = self.open_account(owner) {
            account.bytes = account.bytes.saturating_sub(bytes);
            account.blocks = account.blocks.saturating_sub(1);
        } else {
            self.orphan_bytes = self.orphan_bytes.saturating_sub(bytes);
            self.orphan_blocks = self.orphan_blocks.saturating_sub(1);
        }
    }
}

thread_local! {
    /// The ledger (by address) and account the current thread's QuickJS work is charged to.
    static CHARGED: Cell<(usize, Owner)> = const { Cell::new((0, Owner::RUNTIME)) };
}

/// The accounts of one runtime: its own and one per live session.
#[derive(Debug)]
pub(crate) struct Ledger {
    book: Mutex<Book>,
}

impl Ledger {
    /// A ledger whose runtime account may hold `runtime_limit` bytes.
    pub(crate) fn new(runtime_limit: usize) -> Arc<Self> {
        let runtime = Account {
            bytes: 0,
            blocks: 0,
            limit: runtime_limit,
            generation: 0,
            open: true,
            refused: false,
        };
        Arc::new(Self {
            book: Mutex::new(Book {
                accounts: vec![runtime],
                closed: Vec::new(),
                orphan_bytes: 0,
                orphan_blocks: 0,
            }),
        })
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        // Nothing panics while the book is held; a poisoned lock still holds consistent data.
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens an account for a session that may hold `limit` bytes.
    pub(crate) fn open(&self, limit: usize) -> Owner {
        let mut book = self.book();
        let reused = book.closed.pop();
        let slot = match reused {
            Some(slot) => slot,
            None => u32::try_from(book.accounts.len()).unwrap_or(u32::MAX),
        };
        let index = usize::try_from(slot).unwrap_or(usize::MAX);
        let generation = match book.accounts.get_mut(index) {
            Some(account) => {
                let generation = account.generation.wrapping_add(1);
                *account = Account {
                    bytes: 0,
                    blocks: 0,
                    limit,
                    generation,
                    open: true,
                    refused: false,
                };
                generation
            }
            None => {
                book.accounts.push(Account {
                    bytes: 0,
                    blocks: 0,
                    limit,
                    generation: 0,
                    open: true,
                    refused: false,
                });
                0
            }
        };
        Owner { slot, generation }
    }

    /// Closes a session's account; what it still owns becomes orphaned.
    pub(crate) fn close(&self, owner: Owner) {
        if owner == Owner::RUNTIME {
            return;
        }
        let mut book = self.book();
        let Some(account) = book.open_account(owner) else {
            return;
        };
        account.open = false;
        let (bytes, blocks) = (account.bytes, account.blocks);
        book.orphan_bytes += bytes;
        book.orphan_blocks += blocks;
        book.closed.push(owner.slot);
    }

    /// Charges this thread's QuickJS work to `owner` until the guard drops.
    pub(crate) fn charge_to(self: &Arc<Self>, owner: Owner) -> ChargeGuard {
        let id = Arc::as_ptr(self) as usize;
        let previous = CHARGED.with(|c| c.replace((id, owner)));
        ChargeGuard { previous }
    }

    /// The account this thread's work in this ledger's runtime is charged to.
    fn current(&self) -> Owner {
        let (id, owner) = CHARGED.with(Cell::get);
        if id == std::ptr::from_ref(self) as usize {
            owner
        } else {
            Owner::RUNTIME
        }
    }

    /// Forgets earlier refusals of `owner`'s allocations.
    pub(crate) fn clear_refused(&self, owner: Owner) {
        if let Some(account) = self.book().open_account(owner) {
            account.refused = false;
        }
    }

    /// Whether an allocation of `owner`'s was refused since [`Self::clear_refused`].
    pub(crate) fn refused(&self, owner: Owner) -> bool {
        self.book().open_account(owner).is_some_and(|a| a.refused)
    }

    /// What `owner` holds now (zero once its session has ended).
    pub(crate) fn session(&self, owner: Owner) -> SessionMemory {
        self.book()
            .open_account(owner)
            .map(|a| SessionMemory {
                bytes: a.bytes,
                blocks: a.blocks,
                limit: a.limit,
            })
            .unwrap_or_default()
    }

    /// All accounts at once.
    pub(crate) fn summary(&self) -> LedgerSummary {
        let book = self.book();
        let mut summary = LedgerSummary {
            orphan_bytes: book.orphan_bytes,
            blocks: book.orphan_blocks,
            ..LedgerSummary::default()
        };
        for (i, account) in book.accounts.iter().enumerate() {
            if !account.open {
                continue;
            }
            summary.blocks += account.blocks;
            if i == 0 {
                summary.runtime_bytes = account.bytes;
            } else {
                summary.session_bytes += account.bytes;
                summary.sessions += 1;
            }
        }
        summary
    }
}

/// Restores the previous charged account when dropped.
#[derive(Debug)]
pub(crate) struct ChargeGuard {
    previous: (usize, Owner),
}

impl Drop for ChargeGuard {
    fn drop(&mut self) {
        let previous = self.previous;
        CHARGED.with(|c| c.set(previous));
    }
}

/// The allocator of a runtime whose sessions each have their own limit (see the module docs).
pub(crate) struct SessionAllocator {
    ledger: Arc<Ledger>,
}

impl SessionAllocator {
    /// An allocator charging `ledger`'s accounts.
    pub(crate) fn new(ledger: Arc<Ledger>) -> Self {
        Self { ledger }
    }

    /// Bytes to request for a payload of `size`: rounded up to [`ALIGN`], header added.
    fn block_bytes(size: usize) -> Option<usize> {
        size.checked_next_multiple_of(ALIGN)?
            .checked_add(HEADER_BYTES)
    }

    fn allocate(&self, size: usize, zeroed: bool) -> *mut u8 {
        let Some(bytes) = Self::block_bytes(size) else {
            return std::ptr::null_mut();
        };
        let Ok(layout) = Layout::from_size_align(bytes, ALIGN) else {
            return std::ptr::null_mut();
        };
        let Some(owner) = self.ledger.book().charge(self.ledger.current(), bytes) else {
            return std::ptr::null_mut();
        };
        // SAFETY: `layout` has a non-zero size (it includes the header).
        let base = unsafe {
            if zeroed {
                System.alloc_zeroed(layout)
            } else {
                System.alloc(layout)
            }
        };
        if base.is_null() {
            self.ledger.book().credit(owner, bytes);
            return base;
        }
        let header = Header {
            size: bytes - HEADER_BYTES,
            owner,
        };
        // SAFETY: `base` is a fresh block of `bytes >= HEADER_BYTES` bytes aligned to `ALIGN`,
        // which is `Header`'s alignment; the payload starts right after the header.
        unsafe {
            base.cast::<Header>().write(header);
            base.add(HEADER_BYTES)
        }
    }
}

/// The header of a block this allocator returned, and the start of the system block.
///
/// # Safety
/// `ptr` must have been returned by [`SessionAllocator`] and not yet freed.
unsafe fn header_of(ptr: *mut u8) -> (*mut u8, Header) {
    // SAFETY: the caller's contract: a header precedes `ptr` in the same system block.
    unsafe {
        let base = ptr.sub(HEADER_BYTES);
        (base, base.cast::<Header>().read())
    }
}

// SAFETY: blocks come from the system allocator with `ALIGN` (8-byte) alignment and at least
// the requested size after the header; `usable_size` reports the size recorded at allocation;
// every pointer handed out is `HEADER_BYTES` past the start of its system block, which is how
// `dealloc`/`realloc` find the block again with the same layout.
unsafe impl Allocator for SessionAllocator {
    fn alloc(&mut self, size: usize) -> *mut u8 {
        self.allocate(size, false)
    }

    fn calloc(&mut self, count: usize, size: usize) -> *mut u8 {
        match count.checked_mul(size) {
            Some(total) => self.allocate(total, true),
            None => std::ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&mut self, ptr: *mut u8) {
        if ptr.is_null() {
            return;
        }
        // SAFETY: `ptr` came from this allocator (the trait's contract).
        let (base, header) = unsafe { header_of(ptr) };
        let bytes = header.size + HEADER_BYTES;
        self.ledger.book().credit(header.owner, bytes);
        // SAFETY: `base` was allocated by `System` with exactly this layout.
        unsafe {
            System.dealloc(base, Layout::from_size_align_unchecked(bytes, ALIGN));
        }
    }

    unsafe fn realloc(&mut self, ptr: *mut u8, new_size: usize) -> *mut u8 {
        if ptr.is_null() {
            return self.allocate(new_size, false);
        }
        let Some(new_bytes) = Self::block_bytes(new_size) else {
            return std::ptr::null_mut();
        };
        // SAFETY: `ptr` came from this allocator (the trait's contract).
        let (base, header) = unsafe { header_of(ptr) };
        let old_bytes = header.size + HEADER_BYTES;
        let owner = {
            // The block moves to the current account: credit the old owner, then charge the
            // new one in full; on refusal, put the old charge back.
            let mut book = self.ledger.book();
            book.credit(header.owner, old_bytes);
            match book.charge(self.ledger.current(), new_bytes) {
                Some(owner) => owner,
                None => {
                    book.restore(header.owner, old_bytes);
                    return std::ptr::null_mut();
                }
            }
        };
        // SAFETY: `base` was allocated by `System` with this old layout; `new_bytes` is
        // non-zero and a multiple of the alignment.
        let moved = unsafe {
            System.realloc(
                base,
                Layout::from_size_align_unchecked(old_bytes, ALIGN),
                new_bytes,
            )
        };
        if moved.is_null() {
            let mut book = self.ledger.book();
            book.credit(owner, new_bytes);
            book.restore(header.owner, old_bytes);
            return moved;
        }
        let header = Header {
            size: new_bytes - HEADER_BYTES,
            owner,
        };
        // SAFETY: `moved` is a block of `new_bytes >= HEADER_BYTES` bytes, aligned to `ALIGN`.
        unsafe {
            moved.cast::<Header>().write(header);
            moved.add(HEADER_BYTES)
        }
    }

    unsafe fn usable_size(ptr: *mut u8) -> usize {
        if ptr.is_null() {
            return 0;
        }
        // SAFETY: `ptr` came from this allocator (the trait's contract).
        unsafe { header_of(ptr).1.size }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_charged_to_the_current_session_and_credited_to_their_owner() {
        let ledger = Ledger::new(1 << 20);
        let mut allocator = SessionAllocator::new(Arc::clone(&ledger));
        let a = ledger.open(4096);
        let b = ledger.open(4096);
        let block = {
            let _charge = ledger.charge_to(a);
            allocator.alloc(1000)
        };
        assert!(!block.is_null());
        assert_eq!(ledger.session(a).bytes, 1000 + HEADER_BYTES);
        assert_eq!(ledger.session(a).blocks, 1);
        // Freed while b is charged (a collection during b's evaluation): a gets it back.
        {
            let _charge = ledger.charge_to(b);
            // SAFETY: `block` came from this allocator.
            unsafe { allocator.dealloc(block) };
        }
        assert_eq!(
            ledger.session(a),
            SessionMemory {
                bytes: 0,
                blocks: 0,
                limit: 4096
            }
        );
        assert_eq!(ledger.session(b).bytes, 0);
    }

    #[test]
    fn a_session_past_its_limit_is_refused_and_others_are_not() {
        let ledger = Ledger::new(1 << 20);
        let mut allocator = SessionAllocator::new(Arc::clone(&ledger));
        let a = ledger.open(4096);
        let b = ledger.open(4096);
        let _charge = ledger.charge_to(a);
        let first = allocator.alloc(3000);
        assert!(!first.is_null());
        assert!(allocator.alloc(2000).is_null(), "past a's 4096 bytes");
        assert!(ledger.refused(a));
        drop(_charge);
        let _charge = ledger.charge_to(b);
        let other = allocator.calloc(100, 20);
        assert!(!other.is_null(), "b has its own allowance");
        // SAFETY: `other` is a zeroed block of 2000 bytes from this allocator.
        assert!(
            unsafe { std::slice::from_raw_parts(other, 2000) }
                .iter()
                .all(|&x| x == 0)
        );
        assert!(!ledger.refused(b));
        ledger.clear_refused(a);
        assert!(!ledger.refused(a));
        // SAFETY: both came from this allocator.
        unsafe {
            allocator.dealloc(first);
            allocator.dealloc(other);
        }
        assert_eq!(ledger.summary().session_bytes, 0);
    }

    #[test]
    fn realloc_moves_the_block_to_whoever_grows_it_within_their_limit() {
        let ledger = Ledger::new(1 << 20);
        let mut allocator = SessionAllocator::new(Arc::clone(&ledger));
        let a = ledger.open(8192);
        let b = ledger.open(2048);
        let block = {
            let _charge = ledger.charge_to(a);
            allocator.alloc(96)
        };
        // SAFETY: `block` has 96 bytes.
        unsafe { block.write_bytes(7, 96) };
        let _charge = ledger.charge_to(b);
        // SAFETY: `block` came from this allocator.
        assert!(
            unsafe { allocator.realloc(block, 4000) }.is_null(),
            "b's limit"
        );
        assert_eq!(ledger.session(a).bytes, 96 + HEADER_BYTES, "a keeps it");
        // SAFETY: as above; a failed realloc leaves the block valid.
        let grown = unsafe { allocator.realloc(block, 1000) };
        assert!(!grown.is_null());
        // SAFETY: the first 96 bytes were copied.
        assert_eq!(unsafe { *grown.add(95) }, 7);
        assert_eq!(ledger.session(a).bytes, 0);
        assert_eq!(ledger.session(b).bytes, 1000 + HEADER_BYTES);
        // SAFETY: `grown` came from this allocator.
        assert_eq!(unsafe { SessionAllocator::usable_size(grown) }, 1000);
        // SAFETY: as above.
        unsafe { allocator.dealloc(grown) };
        assert_eq!(ledger.session(b).bytes, 0);
    }

    #[test]
    fn an_ended_sessions_blocks_are_orphans_and_its_slot_starts_clean() {
        let ledger = Ledger::new(1 << 20);
        let mut allocator = SessionAllocator::new(Arc::clone(&ledger));
        let a = ledger.open(8192);
        let block = {
            let _charge = ledger.charge_to(a);
            allocator.alloc(496)
        };
        ledger.close(a);
        assert_eq!(ledger.summary().orphan_bytes, 496 + HEADER_BYTES);
        let c = ledger.open(8192);
        assert_eq!(c.slot, a.slot, "the slot is reused");
        assert_ne!(c, a);
        // SAFETY: `block` came from this allocator.
        unsafe { allocator.dealloc(block) };
        let summary = ledger.summary();
        assert_eq!(summary.orphan_bytes, 0);
        assert_eq!(
            ledger.session(c).bytes,
            0,
            "c is not credited for a's block"
        );
        assert_eq!(summary.sessions, 1);
    }

    #[test]
    fn work_outside_a_session_is_charged_to_the_runtime_within_its_limit() {
        let ledger = Ledger::new(1024);
        let other = Ledger::new(1 << 20);
        let mut allocator = SessionAllocator::new(Arc::clone(&ledger));
        // Charging another ledger's session does not charge this one's sessions.
        let stranger = other.open(1 << 20);
        let _charge = other.charge_to(stranger);
        let block = allocator.alloc(512);
        assert!(!block.is_null());
        assert_eq!(ledger.summary().runtime_bytes, 512 + HEADER_BYTES);
        assert!(allocator.alloc(1024).is_null(), "past the runtime's limit");
        // SAFETY: `block` came from this allocator.
        unsafe { allocator.dealloc(block) };
        assert_eq!(ledger.summary(), LedgerSummary::default());
    }
}
