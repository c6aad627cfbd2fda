//! Small utilities the gateway's Lua code needs and LuaJIT lacks: JSON with explicit
//! arrays and nulls, random UUIDs, UTF-8 checks and a printable form of hostile bytes.

use mlua::{Lua, LuaSerdeExt, LuaString, Result as LuaResult, Table, Value};

/// Adds `json_decode`, `json_encode`, `utf8_valid`, `printable`, `null`, `array_mt`,
/// `uuid`, `write_file_atomic` and `remove_stale_temporaries` to the module table.
pub fn register(lua: &Lua, m: &Table) -> LuaResult<()> {
    m.set("json_decode", lua.create_function(json_decode)?)?;
    m.set("json_encode", lua.create_function(json_encode)?)?;
    m.set("utf8_valid", lua.create_function(utf8_valid)?)?;
    m.set(
        "printable",
        lua.create_function(|_, s: LuaString| Ok(printable(&s.as_bytes())))?,
    )?;
    m.set("null", lua.null())?;
    m.set("array_mt", lua.array_metatable())?;
    m.set("uuid", lua.create_function(uuid)?)?;
    m.set("write_file_atomic", lua.create_function(write_file_atomic)?)?;
    m.set(
        "remove_stale_temporaries",
        lua.create_function(remove_stale_temporaries)?,
    )?;
    Ok(())
}

/// json_decode(text) -> value | nil, err. Arrays get `array_mt`, JSON null is `null`.
/// An integer a Lua number cannot hold exactly is an error naming where it is.
fn json_decode(lua: &Lua, text: LuaString) -> LuaResult<(Option<Value>, Option<String>)> {
    match serde_json::from_slice::<serde_json::Value>(&text.as_bytes()) {
        Ok(v) => match crate::config::json_input::inexact_integer(&v) {
            None => Ok((Some(lua.to_value(&v)?), None)),
            Some(e) => Ok((None, Some(format!("invalid JSON: {e}")))),
        },
        Err(e) => Ok((None, Some(format!("invalid JSON: {e}")))),
    }
}

/// json_encode(value) -> text | nil, err. Tables with `array_mt` (or a non-empty
/// sequence) become arrays; other tables objects, keys sorted.
fn json_encode(lua: &Lua, v: Value) -> LuaResult<(Option<String>, Option<String>)> {
    match lua.from_value::<serde_json::Value>(v) {
        Ok(j) => Ok((Some(j.to_string()), None)),
        Err(e) => Ok((None, Some(format!("cannot encode as JSON: {e}")))),
    }
}

/// utf8_valid(s) -> whether `s` is valid UTF-8.
fn utf8_valid(_: &Lua, s: LuaString) -> LuaResult<bool> {
    Ok(std::str::from_utf8(&s.as_bytes()).is_ok())
}

/// uuid() -> a random (version 4) UUID string.
fn uuid(_: &Lua, (): ()) -> LuaResult<String> {
    crate::config::identity::uuid_v4().map_err(mlua::Error::RuntimeError)
}

/// write_file_atomic(path, contents[, may_rename]) -> true | nil, err: a temporary
/// file beside `path`, fsync, rename over `path`, fsync of the directory. Readers see
/// the old or the new contents, never a part. `may_rename()`, if given, is asked once
/// the new contents are on disk: unless it returns true, `path` is left as it was.
fn write_file_atomic(
    _: &Lua,
    (path, contents, may_rename): (String, LuaString, Option<mlua::Function>),
) -> LuaResult<(Option<bool>, Option<String>)> {
    // 0600 whatever nginx's umask: the state decides what the gateway proxies and to
    // whom, so no other local user may write (or read) it.
    let at = std::path::Path::new(&path);
    let fence = || match &may_rename {
        None => Ok(()),
        Some(f) => match f.call::<bool>(()) {
            Ok(true) => Ok(()),
            Ok(false) => Err(std::io::Error::other("the write was superseded")),
            Err(e) => Err(std::io::Error::other(e.to_string())),
        },
    };
    match crate::host::atomic_file::write_fenced(at, &contents.as_bytes(), 0o600, fence) {
        Ok(()) => Ok((Some(true), None)),
        Err(e) => Ok((None, Some(format!("{path}: {e}")))),
    }
}

/// remove_stale_temporaries(path) -> n: removes what writers of `path` that died
/// before their rename left beside it.
fn remove_stale_temporaries(_: &Lua, path: String) -> LuaResult<usize> {
    Ok(crate::host::atomic_file::remove_stale(
        std::path::Path::new(&path),
    ))
}

/// `bytes` with every control character, backslash and byte that is not part of valid
/// UTF-8 written as `\xNN`: one line of valid UTF-8 that says which bytes were sent.
pub fn printable(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() || c == '\\' {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\x{b:02X}");
                }
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn printable_escapes_controls_backslashes_and_invalid_utf8_only() {
        assert_eq!(printable(b"plain /path?q=1"), "plain /path?q=1");
        assert_eq!(printable("café ☃".as_bytes()), "café ☃");
        assert_eq!(printable(b"a\r\nX-Evil: 1"), "a\\x0D\\x0AX-Evil: 1");
        assert_eq!(printable(b"bad\xFFname"), "bad\\xFFname");
        assert_eq!(printable(b"\\x41"), "\\x5Cx41");
        assert_eq!(printable(b"\x00\x7F"), "\\x00\\x7F");
        // C1 controls are characters of their own in UTF-8: each byte is shown.
        assert_eq!(printable("\u{85}".as_bytes()), "\\xC2\\x85");
        // A truncated sequence is invalid: its bytes are shown, what follows kept.
        assert_eq!(printable(b"\xE2\x98ok"), "\\xE2\\x98ok");
    }
}
