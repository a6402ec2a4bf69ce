//! Where the server listens: a TCP address (plain HTTP, or TLS with `--tls-cert`/`--tls-key`), or
//! a unix socket (`--unix PATH`); binding it, accepting connections with who is on the other end,
//! and removing the socket file at shutdown.
//!
//! # The unix socket
//!
//! The socket file is created with mode 0600, so only the serving user (and root) can connect:
//! its permissions are the access control. It never exists at PATH with wider permissions, not
//! even for a moment: it is bound inside a fresh private directory beside PATH, given mode 0600
//! and then renamed into place. A socket file left at PATH by a server that died is replaced (one
//! that still answers is not: another server is using it); anything else at PATH (a file, a
//! directory, a link) is refused. At shutdown the file is removed, if it is still the one we made.
//!
//! The peer's uid comes from the kernel (`SO_PEERCRED`), so clients on the socket are told apart
//! by uid for the per-client caps, the rate limit and the audit log.
//!
//! This room handles sockets only; what is said over them is [`super::server`]'s.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio_rustls::TlsAcceptor;

use super::clients::Client;
use crate::sanitize;

/// Where to listen, as the command line said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// Why the server cannot listen where it was asked to.
#[derive(Debug, Error)]
pub enum ListenError {
    #[error("cannot listen on {addr}: {}", describe(.source))]
    Tcp {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error(
        "--unix {}: something that is not a socket is there; refusing to replace it (remove it \
         yourself, or choose another path)",
        sanitize::path(.path)
    )]
    NotASocket { path: PathBuf },
    #[error(
        "--unix {}: another server is listening on it; stop that one first, or choose another path",
        sanitize::path(.path)
    )]
    InUse { path: PathBuf },
    #[error("--unix {}: cannot create the socket: {}", sanitize::path(.path), describe(.source))]
    Unix {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn describe(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::AddrInUse => "the address is in use (is another server running?)".to_owned(),
        _ => crate::source::describe_io(error),
    }
}

/// A bound listener.
pub enum Listener {
    Tcp {
        listener: TcpListener,
        /// Set when the server speaks TLS: every connection's handshake comes first.
        tls: Option<TlsAcceptor>,
    },
    Unix {
        listener: UnixListener,
        /// Removes the socket file when dropped.
        file: SocketFile,
    },
}

/// One accepted connection, before any TLS handshake.
pub enum Accepted {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Listener {
    /// Bind `endpoint`; `tls` for a TCP endpoint that speaks TLS.
    pub async fn bind(
        endpoint: &Endpoint,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Result<Listener, ListenError> {
        match endpoint {
            Endpoint::Tcp(addr) => {
                let listener =
                    TcpListener::bind(addr)
                        .await
                        .map_err(|source| ListenError::Tcp {
                            addr: *addr,
                            source,
                        })?;
                Ok(Listener::Tcp {
                    listener,
                    tls: tls.map(TlsAcceptor::from),
                })
            }
            Endpoint::Unix(path) => {
                let (std_listener, file) = bind_unix(path)?;
                let unix = |source| ListenError::Unix {
                    path: path.clone(),
                    source,
                };
                std_listener.set_nonblocking(true).map_err(unix)?;
                let listener = UnixListener::from_std(std_listener).map_err(unix)?;
                Ok(Listener::Unix { listener, file })
            }
        }
    }

    /// Where clients reach it, as the listening line shows it: `http://ADDR`, `https://ADDR` or
    /// `unix:PATH`.
    pub fn url(&self) -> String {
        match self {
            Listener::Tcp { listener, tls } => {
                let scheme = if tls.is_some() { "https" } else { "http" };
                match listener.local_addr() {
                    Ok(addr) => format!("{scheme}://{addr}"),
                    Err(_) => format!("{scheme}://(unknown address)"),
                }
            }
            Listener::Unix { file, .. } => format!("unix:{}", sanitize::path(&file.path)),
        }
    }

    /// The TLS acceptor, when connections start with a handshake.
    pub fn tls(&self) -> Option<TlsAcceptor> {
        match self {
            Listener::Tcp { tls, .. } => tls.clone(),
            Listener::Unix { .. } => None,
        }
    }

    /// The next connection and who it is from.
    pub async fn accept(&self) -> io::Result<(Accepted, Client)> {
        match self {
            Listener::Tcp { listener, .. } => {
                let (stream, peer) = listener.accept().await?;
                let _ = stream.set_nodelay(true);
                Ok((Accepted::Tcp(stream), Client::from(peer.ip())))
            }
            Listener::Unix { listener, .. } => {
                let (stream, _) = listener.accept().await?;
                let uid = stream.peer_cred()?.uid();
                Ok((Accepted::Unix(stream), Client::Uid(uid)))
            }
        }
    }
}

/// The socket file we made, removed on drop if it is still ours (same device and inode).
pub struct SocketFile {
    path: PathBuf,
    identity: Option<(u64, u64)>,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|metadata| Some((metadata.dev(), metadata.ino())) == self.identity);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Bind a unix socket at `path` with mode 0600 (see the module docs).
fn bind_unix(path: &Path) -> Result<(std::os::unix::net::UnixListener, SocketFile), ListenError> {
    let unix = |source| ListenError::Unix {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_socket() => {
            // A live server answers; a dead one's file refuses the connection.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ListenError::InUse {
                    path: path.to_path_buf(),
                });
            }
        }
        Ok(_) => {
            return Err(ListenError::NotASocket {
                path: path.to_path_buf(),
            })
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(unix(error)),
    }
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // A private directory (0700) beside the final path: the socket is bound there, made 0600,
    // and renamed into place, so nobody can connect while its mode is still the umask's.
    let private = PrivateDir::create(&parent).map_err(unix)?;
    let staged = private.0.join("s");
    let listener = std::os::unix::net::UnixListener::bind(&staged).map_err(unix)?;
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600)).map_err(unix)?;
    std::fs::rename(&staged, path).map_err(unix)?;
    let identity = std::fs::symlink_metadata(path)
        .ok()
        .map(|metadata| (metadata.dev(), metadata.ino()));
    Ok((
        listener,
        SocketFile {
            path: path.to_path_buf(),
            identity,
        },
    ))
}

/// A fresh directory only we can enter (0700), removed with what is left in it on drop.
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn create(parent: &Path) -> io::Result<PrivateDir> {
        use std::os::unix::fs::DirBuilderExt;
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(|error| io::Error::other(error.to_string()))?;
        let path = parent.join(format!(
            ".safe-exec-socket-{}-{}",
            std::process::id(),
            hex::encode(random)
        ));
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(PrivateDir(path))
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_is_0600_replaces_a_dead_one_and_refuses_anything_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.sock");
        let (listener, file) = bind_unix(&path).unwrap();
        let metadata = std::fs::symlink_metadata(&path).unwrap();
        assert!(metadata.file_type().is_socket());
        assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
        // Only the socket is left beside it: the staging directory is gone.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // A live one is not replaced.
        assert!(matches!(bind_unix(&path), Err(ListenError::InUse { .. })));
        // A dead one is (its listener closed, the file left behind).
        drop(listener);
        std::mem::forget(file);
        let (_listener, file) = bind_unix(&path).unwrap();
        drop(file);
        assert!(!path.exists(), "removed when dropped");
        // Anything else is refused and left alone.
        std::fs::write(&path, "data").unwrap();
        assert!(matches!(
            bind_unix(&path),
            Err(ListenError::NotASocket { .. })
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "data");
    }

    #[test]
    fn a_socket_file_replaced_by_someone_else_is_not_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.sock");
        let (_listener, file) = bind_unix(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "someone else's").unwrap();
        drop(file);
        assert!(path.exists());
    }
}
