//! The Lua C API, bound when Lua first requires the module rather than when nginx
//! loads it.
//!
//! nginx opens a module with `dlopen(RTLD_NOW)`: any symbol the file imports must
//! already be in the process. With the lua module loaded after ours (`load_module`
//! order), or not at all (a configuration that only uses `prometheus_metrics`), an
//! imported `lua_setmetatable` would make nginx refuse the file before any of our code
//! runs. So the file imports none: every Lua C function mlua calls is defined here,
//! hidden (never exported, never interposing on the lua module's own calls), as a
//! one-instruction jump through a slot that [`resolve`] fills with `dlsym` from the
//! process' global scope, where the lua module (or nginx itself, when lua is compiled
//! in) has put them by the time Lua runs `require "ngx_prometheus"`.
//!
//! The list is every `lua*` symbol the build would otherwise import; a new one shows
//! as an undefined `lua*` symbol in `nm -D --undefined-only` and fails
//! `nginx::module_loads_before_the_lua_module`.

use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicBool, Ordering};

macro_rules! lua_api {
    ($($name:ident)*) => {
        /// The functions' names, NUL-terminated, in slot order.
        const NAMES: &[&str] = &[$(concat!(stringify!($name), "\0")),*];

        // One 8-byte slot per function, contiguous from `ngxprom_lua_slots` in the order
        // of NAMES; one hidden trampoline per function jumping through its slot.
        #[cfg(target_arch = "x86_64")]
        std::arch::global_asm!(
            ".pushsection .data.ngxprom_lua_slots,\"aw\",@progbits",
            ".p2align 3",
            ".globl ngxprom_lua_slots",
            ".hidden ngxprom_lua_slots",
            "ngxprom_lua_slots:",
            ".popsection",
            $(
                ".pushsection .data.ngxprom_lua_slots,\"aw\",@progbits",
                concat!("ngxprom_slot_", stringify!($name), ": .quad 0"),
                ".popsection",
                concat!(".pushsection .text.ngxprom_", stringify!($name), ",\"ax\",@progbits"),
                concat!(".globl ", stringify!($name)),
                concat!(".hidden ", stringify!($name)),
                concat!(".type ", stringify!($name), ",@function"),
                concat!(stringify!($name), ":"),
                concat!("jmp qword ptr [rip + ngxprom_slot_", stringify!($name), "]"),
                ".popsection",
            )*
        );

        #[cfg(target_arch = "aarch64")]
        std::arch::global_asm!(
            ".pushsection .data.ngxprom_lua_slots,\"aw\",@progbits",
            ".p2align 3",
            ".globl ngxprom_lua_slots",
            ".hidden ngxprom_lua_slots",
            "ngxprom_lua_slots:",
            ".popsection",
            $(
                ".pushsection .data.ngxprom_lua_slots,\"aw\",@progbits",
                concat!("ngxprom_slot_", stringify!($name), ": .quad 0"),
                ".popsection",
                concat!(".pushsection .text.ngxprom_", stringify!($name), ",\"ax\",@progbits"),
                concat!(".globl ", stringify!($name)),
                concat!(".hidden ", stringify!($name)),
                concat!(".type ", stringify!($name), ",@function"),
                concat!(stringify!($name), ":"),
                concat!("adrp x16, ngxprom_slot_", stringify!($name)),
                concat!("ldr x16, [x16, :lo12:ngxprom_slot_", stringify!($name), "]"),
                "br x16",
                ".popsection",
            )*
        );
    };
}

lua_api! {
    luaL_callmeta luaL_checktype luaL_error luaL_getmetafield luaL_loadbuffer luaL_ref
    lua_call lua_checkstack lua_close lua_concat lua_cpcall lua_createtable lua_error
    lua_gc lua_getallocf lua_getfield lua_getinfo lua_getmetatable lua_getstack
    lua_gettable lua_gettop lua_insert lua_isnumber lua_isstring lua_newthread
    lua_newuserdata lua_next lua_objlen lua_pcall lua_pushboolean lua_pushcclosure
    lua_pushfstring lua_pushinteger lua_pushlightuserdata lua_pushlstring lua_pushnil
    lua_pushnumber lua_pushstring lua_pushthread lua_pushvalue lua_rawequal lua_rawget
    lua_rawgeti lua_rawset lua_rawseti lua_remove lua_replace lua_setfenv lua_setfield
    lua_setmetatable lua_settable lua_settop lua_toboolean lua_tolstring lua_tonumber
    lua_topointer lua_tothread lua_touserdata lua_type lua_typename lua_xmove
}

extern "C" {
    static mut ngxprom_lua_slots: [*const c_void; NAMES.len()];
}

static RESOLVED: AtomicBool = AtomicBool::new(false);

/// Fills every slot from the process' global scope. `Err(name)` names the first
/// function no loaded object defines (Lua is not the one nginx's lua module brings).
/// Called from the Lua entry point, on the thread running Lua, before any Lua call.
pub fn resolve() -> Result<(), &'static str> {
    if RESOLVED.load(Ordering::Acquire) {
        return Ok(());
    }
    let mut found = [std::ptr::null(); NAMES.len()];
    for (slot, name) in found.iter_mut().zip(NAMES) {
        // SAFETY: `name` is NUL-terminated (built with concat! above); dlsym only
        // reads it.
        let f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr().cast::<c_char>()) };
        if f.is_null() {
            return Err(name.trim_end_matches('\0'));
        }
        *slot = f.cast_const();
    }
    // SAFETY: the slots are plain data only the trampolines read; nothing calls a
    // trampoline before this returns (Lua has not been given the module yet), and a
    // second resolution writes the same addresses.
    unsafe { std::ptr::addr_of_mut!(ngxprom_lua_slots).write(found) };
    RESOLVED.store(true, Ordering::Release);
    Ok(())
}
