//! Small utilities the gateway's Lua code needs and LuaJIT lacks: JSON with explicit
//! arrays and nulls, random UUIDs.

use mlua::{Lua, LuaSerdeExt, Result as LuaResult, Table, Value};

/// Adds `json_decode`, `json_encode`, `null`, `array_mt` and `uuid` to the module table.
pub fn register(lua: &Lua, m: &Table) -> LuaResult<()> {
    // json_decode(text) -> value | nil, err. Arrays get `array_mt`, JSON null is `null`.
    m.set(
        "json_decode",
        lua.create_function(|lua, text: mlua::LuaString| {
            match serde_json::from_slice::<serde_json::Value>(&text.as_bytes()) {
                Ok(v) => Ok((Some(lua.to_value(&v)?), None)),
                Err(e) => Ok((None, Some(format!("invalid JSON: {e}")))),
            }
        })?,
    )?;
    // json_encode(value) -> text | nil, err. Tables with `array_mt` (or a non-empty
    // sequence) become arrays; other tables objects, keys sorted.
    m.set(
        "json_encode",
        lua.create_function(
            |lua, v: Value| match lua.from_value::<serde_json::Value>(v) {
                Ok(j) => Ok((Some(j.to_string()), None)),
                Err(e) => Ok((None, Some(format!("cannot encode as JSON: {e}")))),
            },
        )?,
    )?;
    m.set("null", lua.null())?;
    m.set("array_mt", lua.array_metatable())?;
    // uuid() -> a random (version 4) UUID string.
    m.set(
        "uuid",
        lua.create_function(|_, ()| {
            let mut b = [0u8; 16];
            // SAFETY: getrandom writes at most `b.len()` bytes into `b`.
            let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
            if n != b.len() as isize {
                return Err(mlua::Error::RuntimeError("getrandom failed".into()));
            }
            b[6] = (b[6] & 0x0f) | 0x40;
            b[8] = (b[8] & 0x3f) | 0x80;
            let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
            Ok(format!(
                "{}-{}-{}-{}-{}",
                &h[0..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..32]
            ))
        })?,
    )?;
    // write_file_atomic(path, contents) -> true | nil, err: a temporary file beside
    // `path`, fsync, rename over `path`, fsync of the directory. Readers see the old or
    // the new contents, never a part.
    m.set(
        "write_file_atomic",
        lua.create_function(|_, (path, contents): (String, mlua::LuaString)| {
            match write_atomic(std::path::Path::new(&path), &contents.as_bytes()) {
                Ok(()) => Ok((Some(true), None)),
                Err(e) => Ok((None, Some(format!("{path}: {e}")))),
            }
        })?,
    )?;
    Ok(())
}

fn write_atomic(path: &std::path::Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let result = (|| {
        // 0600 whatever nginx's umask: the state decides what the gateway proxies and
        // to whom, so no other local user may write (or read) it.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
