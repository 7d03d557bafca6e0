//! Signal measurements that judge what came out of the pipeline against what went in.

pub mod audio;
pub mod echo;
pub mod mouth;
pub mod video;
