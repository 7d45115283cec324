//! A thread-local slot that holds a value for the length of one call: how a
//! decoder learns what its caller knows (the shared input of a decode, the node
//! a message came from, the system refs bind to) without a parameter serde has
//! no room for.

use std::cell::RefCell;
use std::thread::LocalKey;

/// Runs `f` with `slot` holding `value`, then puts back what the slot held
/// before, also when `f` panics: nested calls and unwinding leave the slot as
/// they found it.
pub(crate) fn with_slot<T: 'static, R>(
    slot: &'static LocalKey<RefCell<Option<T>>>,
    value: T,
    f: impl FnOnce() -> R,
) -> R {
    struct Restore<T: 'static> {
        slot: &'static LocalKey<RefCell<Option<T>>>,
        previous: Option<T>,
    }
    impl<T: 'static> Drop for Restore<T> {
        fn drop(&mut self) {
            let previous = self.previous.take();
            self.slot.with(|s| *s.borrow_mut() = previous);
        }
    }
    let previous = slot.with(|s| s.borrow_mut().replace(value));
    let _restore = Restore { slot, previous };
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static SLOT: RefCell<Option<u32>> = const { RefCell::new(None) };
    }

    fn held() -> Option<u32> {
        SLOT.with(|s| *s.borrow())
    }

    #[test]
    fn the_slot_holds_the_value_inside_and_what_it_held_after() {
        assert_eq!(held(), None);
        with_slot(&SLOT, 1, || {
            assert_eq!(held(), Some(1));
            with_slot(&SLOT, 2, || assert_eq!(held(), Some(2)));
            assert_eq!(held(), Some(1));
        });
        assert_eq!(held(), None);
        let unwound = std::panic::catch_unwind(|| with_slot(&SLOT, 3, || panic!("in the call")));
        assert!(unwound.is_err());
        assert_eq!(held(), None, "restored by the unwinding");
    }
}
