//! `EnumSystemLocalesW`, a Windows callback without user data, collecting
//! the locale names it is given into a `Vec` through a capturing closure.

use windows_sys::Win32::Globalization::{EnumSystemLocalesW, LCID_INSTALLED};
use windows_sys::core::{BOOL, PCWSTR};
use wxthunk::Thunk;

/// `LOCALE_ENUMPROCW`: one locale id, as hexadecimal UTF-16 text.
type Visit = unsafe extern "system" fn(PCWSTR) -> BOOL;

pub fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut locales = Vec::new();
    let ok = (|| {
        let visit = Thunk::<Visit>::new_mut(|name: PCWSTR| {
            // SAFETY: the system passes a NUL-terminated UTF-16 string.
            let len = (0..).take_while(|&i| unsafe { *name.add(i) } != 0).count();
            // SAFETY: `len` units before the NUL, all readable.
            let units = unsafe { std::slice::from_raw_parts(name, len) };
            locales.push(String::from_utf16_lossy(units));
            1 // go on
        })?;
        // SAFETY: the thunk lives across the enumeration.
        Ok::<_, wxthunk::Error>(unsafe { EnumSystemLocalesW(Some(visit.as_fn()), LCID_INSTALLED) })
    })();
    let ok = match ok {
        Ok(ok) => ok,
        Err(e) => {
            println!("  EnumSystemLocalesW skipped: {}", crate::causes(&e));
            return Ok(());
        }
    };
    locales.sort();
    println!(
        "  EnumSystemLocalesW (returned {ok}) gave {} installed locales to a closure, into a Vec; the first few:",
        locales.len()
    );
    for l in locales.iter().take(5) {
        println!("    {l}");
    }
    Ok(())
}
