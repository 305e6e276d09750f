//! The first path segments huixin serves itself: never taken for a push key or a topic (ntfy
//! addresses topics by path), and refused as `[server] path`'s first segment.

/// First path segments the server uses itself.
pub const RESERVED: &[&str] = &[
    "wechat",
    "message",
    "push",
    "m",
    "api",
    "ping",
    "healthz",
    "health",
    "v1",
    "static",
    "admin",
    "metrics",
    "emulator",
    "info",
    "version",
    "favicon.ico",
    "robots.txt",
];
