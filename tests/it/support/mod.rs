//! What the tests share: running the grab-bench binary and finding what it left behind
//! ([`cli`]), a scripted HTTP fixture server ([`fixture`]), a small server written to the article's protocol
//! ([`article_server`]), and HTTPS made at test time: a throwaway CA and TLS in front of either
//! ([`tls`]); scenario variants edited by key path ([`variant`]).
#![allow(dead_code)]

pub mod article_server;
pub mod cli;
pub mod fixture;
pub mod tls;
pub mod variant;
