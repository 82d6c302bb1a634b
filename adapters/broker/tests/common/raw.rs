//! A small raw MQTT 5 client on one loopback connection: it reads reason
//! codes (CONNACK, PUBACK) that the command-line clients do not show.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

/// MQTT's variable-length integer.
pub fn varint(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            break;
        }
    }
}

pub fn string(s: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

pub fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![first];
    varint(body.len(), &mut p);
    p.extend_from_slice(body);
    p
}

/// An MQTT 5 client on one connection.
pub struct Client {
    pub stream: TcpStream,
    next_id: u16,
}

impl Client {
    /// Connect, and panic unless the CONNACK accepts.
    pub fn connect(port: u16, id: &str, login: Option<(&str, &str)>) -> Client {
        let (client, code) = Client::try_connect(port, id, login);
        assert_eq!(code, 0, "CONNACK refused with {code:#04x}");
        client
    }

    /// Connect and return the CONNACK's reason code.
    pub fn try_connect(port: u16, id: &str, login: Option<(&str, &str)>) -> (Client, u8) {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut body = Vec::new();
        string("MQTT", &mut body);
        let flags = 0x02 | if login.is_some() { 0xc0 } else { 0 };
        body.extend_from_slice(&[5, flags, 0, 60, 0]);
        string(id, &mut body);
        if let Some((user, password)) = login {
            string(user, &mut body);
            string(password, &mut body);
        }
        let mut client = Client { stream, next_id: 1 };
        client.send(&packet(0x10, &body));
        let (kind, ack) = client.read();
        assert_eq!(kind, 0x20, "CONNACK expected");
        let code = ack.get(1).copied().unwrap_or(0xff);
        (client, code)
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// One packet: (type nibble << 4, body).
    pub fn read(&mut self) -> (u8, Vec<u8>) {
        let mut first = [0u8; 1];
        self.stream.read_exact(&mut first).expect("packet type");
        let (mut len, mut shift) = (0usize, 0);
        loop {
            let mut b = [0u8; 1];
            self.stream.read_exact(&mut b).expect("length");
            len |= usize::from(b[0] & 0x7f) << shift;
            shift += 7;
            if b[0] & 0x80 == 0 {
                break;
            }
        }
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).expect("body");
        (first[0] & 0xf0, body)
    }

    /// PUBLISH at QoS 1 and return the PUBACK's reason code.
    pub fn publish1(&mut self, topic: &str) -> u8 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let mut body = Vec::new();
        string(topic, &mut body);
        body.extend_from_slice(&id.to_be_bytes());
        body.push(0); // no properties
        body.extend_from_slice(b"m");
        self.send(&packet(0x32, &body));
        loop {
            let (kind, ack) = self.read();
            if kind == 0x40 && ack.get(..2) == Some(&id.to_be_bytes()[..]) {
                // Reason code omitted: success (MQTT 5 §3.4.2.1).
                return ack.get(2).copied().unwrap_or(0);
            }
        }
    }
}
