//! A local stand-in for WeChat's platform: the outbound API, and WeChat's side of the callback.
