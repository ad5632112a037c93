//! Binding the listener.

use faas_runtime::Error;

use crate::support::small_config;

#[tokio::test]
async fn binding_an_address_in_use_names_it() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut config = small_config();
    config.listen = taken.local_addr().expect("local address");
    match faas_runtime::bind(&config).await {
        Err(err @ Error::Bind { addr, .. }) => {
            assert_eq!(addr, config.listen);
            assert!(
                err.to_string().contains(&config.listen.to_string()),
                "{err}"
            );
        }
        other => panic!("expected Error::Bind, got {other:?}"),
    }
}
