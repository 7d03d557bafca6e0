//! What sits between a call and the network: for now the seeded impairment layer that duet
//! puts under the real WebRTC stack for tests and for `duet loopback --impair ...`.

/// Implements every [`Runtime`](webrtc::runtime::Runtime) method but `wrap_udp_socket` and
/// `name` by handing it to `self.inner`: the runtimes here change only what a UDP socket is.
macro_rules! forward_to_inner_runtime {
    () => {
        fn spawn(
            &self,
            future: ::std::pin::Pin<Box<dyn ::std::future::Future<Output = ()> + Send>>,
        ) -> Box<dyn ::webrtc::runtime::JoinHandle> {
            self.inner.spawn(future)
        }

        fn spawn_reactor(
            &self,
            reactor_pool_size: usize,
            future: ::std::pin::Pin<Box<dyn ::std::future::Future<Output = ()> + Send>>,
        ) -> Box<dyn ::webrtc::runtime::JoinHandle> {
            self.inner.spawn_reactor(reactor_pool_size, future)
        }

        fn wrap_tcp_listener(
            &self,
            listener: ::std::net::TcpListener,
        ) -> ::std::io::Result<::std::sync::Arc<dyn ::webrtc::runtime::AsyncTcpListener>> {
            self.inner.wrap_tcp_listener(listener)
        }

        fn connect_tcp<'a>(
            &'a self,
            remote_addr: ::std::net::SocketAddr,
        ) -> ::std::pin::Pin<
            Box<
                dyn ::std::future::Future<
                        Output = ::std::io::Result<
                            ::std::sync::Arc<dyn ::webrtc::runtime::AsyncTcpStream>,
                        >,
                    > + Send
                    + 'a,
            >,
        > {
            self.inner.connect_tcp(remote_addr)
        }

        fn resolve_host<'a>(
            &'a self,
            host: &'a str,
        ) -> ::std::pin::Pin<
            Box<
                dyn ::std::future::Future<Output = ::std::io::Result<Vec<::std::net::SocketAddr>>>
                    + Send
                    + 'a,
            >,
        > {
            self.inner.resolve_host(host)
        }

        fn now(&self) -> ::std::time::Instant {
            self.inner.now()
        }

        fn sleep(
            &self,
            duration: ::std::time::Duration,
        ) -> ::std::pin::Pin<Box<dyn ::std::future::Future<Output = ()> + Send + 'static>> {
            self.inner.sleep(duration)
        }

        fn interval(
            &self,
            period: ::std::time::Duration,
        ) -> Box<dyn ::webrtc::runtime::AsyncInterval> {
            self.inner.interval(period)
        }

        fn block_on(
            &self,
            future: ::std::pin::Pin<Box<dyn ::std::future::Future<Output = ()> + '_>>,
        ) {
            self.inner.block_on(future)
        }

        fn yield_now(
            &self,
        ) -> ::std::pin::Pin<Box<dyn ::std::future::Future<Output = ()> + Send + 'static>> {
            self.inner.yield_now()
        }
    };
}

mod buffers;
pub mod impair;

pub use buffers::{BufferedRuntime, SOCKET_BUFFER};
pub use impair::{ImpairConfig, ImpairCounters, ImpairStats, ImpairedRuntime};
