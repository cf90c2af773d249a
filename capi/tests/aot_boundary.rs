//! The runtime of ahead-of-time libraries at its C boundary, without a
//! library: NULL contexts and slots are errors with codes (E0302), never a
//! crash, and freeing NULL does nothing. (`c/tests/aot.rs` tests the
//! libraries `slope build` makes.)

use slope_capi::aot::{slope_aot_call, slope_aot_call_named, slope_aot_context_free, slope_aot_set_threads};
use slope_capi::values::{slope_error_code, slope_error_free, slope_error_message, SlopeError};
use std::ffi::CStr;

/// The code and message of `err`, freeing it.
fn take(err: *mut SlopeError) -> (String, String) {
    assert!(!err.is_null(), "an error was reported");
    // SAFETY: a live error made by the runtime, freed once.
    unsafe {
        let code = CStr::from_ptr(slope_error_code(err)).to_string_lossy().into_owned();
        let message = CStr::from_ptr(slope_error_message(err)).to_string_lossy().into_owned();
        slope_error_free(err);
        (code, message)
    }
}

#[test]
fn a_null_context_is_an_error_not_a_crash() {
    let (mut result, mut err) = (std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: NULL context and arguments are what is being tested; the slots are valid.
    let status = unsafe { slope_aot_call(std::ptr::null(), 0, std::ptr::null(), 0, &mut result, &mut err) };
    assert_eq!(status, 1);
    assert!(result.is_null());
    assert_eq!(take(err), ("E0302".to_string(), "the context is NULL".to_string()));

    let mut err = std::ptr::null_mut();
    let name = c"f";
    // SAFETY: as above.
    let status =
        unsafe { slope_aot_call_named(std::ptr::null(), name.as_ptr(), std::ptr::null(), 0, &mut result, &mut err) };
    assert_eq!(status, 1);
    assert_eq!(take(err).0, "E0302");

    let mut err = std::ptr::null_mut();
    // SAFETY: as above.
    assert_eq!(unsafe { slope_aot_set_threads(std::ptr::null(), 2, &mut err) }, 1);
    assert_eq!(take(err).0, "E0302");
}

#[test]
fn errors_go_nowhere_when_no_slot_is_given_and_null_frees_nothing() {
    // SAFETY: NULL error and result slots are allowed; freeing NULL is a no-op.
    unsafe {
        assert_eq!(
            slope_aot_call(std::ptr::null(), 0, std::ptr::null(), 0, std::ptr::null_mut(), std::ptr::null_mut()),
            1
        );
        slope_aot_context_free(std::ptr::null_mut());
        slope_error_free(std::ptr::null_mut());
    }
}
