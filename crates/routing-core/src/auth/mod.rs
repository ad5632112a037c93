//! Request signing and credential sources for the providers that need more
//! than a static key: AWS SigV4 (Bedrock) and Google OAuth2 (Vertex).

pub mod google;
pub mod sigv4;
