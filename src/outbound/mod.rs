//! The outbound half of the protocol: WeChat's API, with one shared access token.
