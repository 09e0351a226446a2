//! One text negotiation exchange (RFC 7143 11.10, 11.11) without I/O, the
//! same for a normal session and a discovery session: a request may come
//! in several PDUs (the initiator sets C and the target asks for the rest
//! with an empty response carrying a Target Transfer Tag), and the answer
//! may go in several (C on each response but the last, each asked for by
//! an empty request echoing the tag).

use crate::pdu::{RESERVED_TAG, RejectReason};
use crate::typed::{Sn, TextRequest, TextResponse};

/// How much of a request the target gathers before refusing it: a
/// SendTargets or a redeclared key is a few dozen bytes.
pub const MAX_REQUEST: usize = 64 * 1024;

/// The connection's target transfer tags (R2Ts, pings, text): never 0 and
/// never the reserved 0xffffffff.
pub fn next_tag(counter: &mut u32) -> u32 {
    if *counter == 0 || *counter == RESERVED_TAG {
        *counter = 1;
    }
    let t = *counter;
    *counter = counter.wrapping_add(1);
    t
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Idle,
    /// The initiator's request so far.
    Gathering { itt: u32, ttt: u32, buf: Vec<u8> },
    /// What is left of the answer.
    Answering { itt: u32, ttt: u32, rest: Vec<u8> },
}

/// What the driver does with a Text Request.
#[derive(Debug, PartialEq, Eq)]
pub enum TextStep {
    /// An empty Text Response (F=0, C=0) with this tag: send the rest.
    MoreRequest { ttt: u32 },
    /// A whole request: work out the answer and give it to [`TextExchange::answer`].
    Request(Vec<u8>),
    /// Send this piece of the answer.
    Piece(Piece),
    /// Reject the PDU; the exchange is over.
    Reject(RejectReason),
}

/// One Text Response's worth of the answer.
#[derive(Debug, PartialEq, Eq)]
pub struct Piece {
    pub data: Vec<u8>,
    /// Reserved when this is the last piece.
    pub ttt: u32,
    /// F (the last) or C (more follows).
    pub last: bool,
}

impl Piece {
    /// The empty response that asks for the rest of a request.
    pub fn ask(ttt: u32) -> Self {
        Piece {
            data: Vec::new(),
            ttt,
            last: false,
        }
    }

    /// Whether this is [`Piece::ask`]: neither F nor C goes with it.
    pub fn is_ask(&self) -> bool {
        !self.last && self.data.is_empty()
    }

    /// Its Text Response: F on the last piece, C on the others, neither
    /// when it asks for the rest of a request.
    pub fn response(&self, lun: [u8; 8], itt: u32, sn: Sn) -> TextResponse {
        let ask = self.is_ask();
        TextResponse {
            final_: !ask && self.last,
            continue_: !ask && !self.last,
            lun,
            itt,
            ttt: self.ttt,
            sn,
        }
    }
}

#[derive(Debug, Default)]
pub struct TextExchange {
    state: State,
    /// The initiator's MaxRecvDataSegmentLength when the answer began.
    mrdsl: usize,
}

impl TextExchange {
    /// A decoded Text Request PDU with its data.
    pub fn take(&mut self, req: &TextRequest, data: &[u8], tags: &mut u32) -> TextStep {
        self.request(req.itt, req.ttt, req.final_, req.continue_, data, tags)
    }

    /// A Text Request with its ITT, TTT, F and C bits and data. `tags` is
    /// the connection's transfer-tag counter.
    pub fn request(
        &mut self,
        itt: u32,
        ttt: u32,
        final_bit: bool,
        continue_bit: bool,
        data: &[u8],
        tags: &mut u32,
    ) -> TextStep {
        if final_bit && continue_bit {
            self.state = State::Idle;
            return TextStep::Reject(RejectReason::ProtocolError);
        }
        let state = std::mem::take(&mut self.state);
        if ttt == RESERVED_TAG {
            // A new exchange (one still going is given up, 11.10.4).
            return self.gather(itt, Vec::new(), data, continue_bit, tags);
        }
        match state {
            State::Gathering {
                itt: i,
                ttt: t,
                buf,
            } if i == itt && t == ttt => self.gather(itt, buf, data, continue_bit, tags),
            // The initiator asks for the next piece with an empty request.
            State::Answering {
                itt: i,
                ttt: t,
                rest,
            } if i == itt && t == ttt && data.is_empty() => {
                self.state = State::Answering { itt, ttt: t, rest };
                TextStep::Piece(self.next_piece(itt, tags))
            }
            _ => TextStep::Reject(RejectReason::InvalidPduField),
        }
    }

    fn gather(
        &mut self,
        itt: u32,
        mut buf: Vec<u8>,
        data: &[u8],
        more: bool,
        tags: &mut u32,
    ) -> TextStep {
        if buf.len() + data.len() > MAX_REQUEST {
            return TextStep::Reject(RejectReason::ProtocolError);
        }
        buf.extend_from_slice(data);
        if more {
            let ttt = next_tag(tags);
            self.state = State::Gathering { itt, ttt, buf };
            TextStep::MoreRequest { ttt }
        } else {
            TextStep::Request(buf)
        }
    }

    /// The first piece of the answer to the request just gathered, cut to
    /// the initiator's MaxRecvDataSegmentLength (`mrdsl`), which also
    /// cuts the later pieces.
    pub fn answer(&mut self, itt: u32, reply: Vec<u8>, mrdsl: usize, tags: &mut u32) -> Piece {
        self.state = State::Answering {
            itt,
            ttt: RESERVED_TAG,
            rest: reply,
        };
        self.mrdsl = mrdsl.max(1);
        self.next_piece(itt, tags)
    }

    fn next_piece(&mut self, itt: u32, tags: &mut u32) -> Piece {
        let State::Answering { rest, .. } = std::mem::take(&mut self.state) else {
            return Piece {
                data: Vec::new(),
                ttt: RESERVED_TAG,
                last: true,
            };
        };
        let chunk = self.mrdsl.max(1);
        if rest.len() <= chunk {
            return Piece {
                data: rest,
                ttt: RESERVED_TAG,
                last: true,
            };
        }
        let mut data = rest;
        let rest = data.split_off(chunk);
        let ttt = next_tag(tags);
        self.state = State::Answering { itt, ttt, rest };
        Piece {
            data,
            ttt,
            last: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ITT: u32 = 7;

    /// The flags byte of a piece's Text Response.
    fn flags(p: &Piece) -> u8 {
        use crate::typed::Typed;
        p.response([0; 8], ITT, Sn::default()).encode().0[1]
    }

    fn whole(x: &mut TextExchange, data: &[u8], tags: &mut u32) -> Vec<u8> {
        match x.request(ITT, RESERVED_TAG, true, false, data, tags) {
            TextStep::Request(d) => d,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_short_request_and_answer_take_one_pdu_each() {
        let (mut x, mut tags) = (TextExchange::default(), 1);
        assert_eq!(
            whole(&mut x, b"SendTargets=All\0", &mut tags),
            b"SendTargets=All\0"
        );
        let p = x.answer(ITT, b"TargetName=a\0".to_vec(), 8192, &mut tags);
        assert_eq!((p.last, p.ttt, flags(&p)), (true, RESERVED_TAG, 0x80));
        // Nothing is pending: a continuation now is refused.
        assert_eq!(
            x.request(ITT, 5, true, false, b"", &mut tags),
            TextStep::Reject(RejectReason::InvalidPduField)
        );
    }

    #[test]
    fn a_long_answer_goes_in_pieces_each_asked_for() {
        let (mut x, mut tags) = (TextExchange::default(), 1);
        whole(&mut x, b"SendTargets=All\0", &mut tags);
        let reply: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let p1 = x.answer(ITT, reply.clone(), 4096, &mut tags);
        assert_eq!((p1.data.len(), p1.last, flags(&p1)), (4096, false, 0x40));
        assert_ne!(p1.ttt, RESERVED_TAG);
        // A wrong tag or a different ITT is refused...
        let mut y = TextExchange::default();
        y.answer(ITT, reply.clone(), 4096, &mut tags);
        assert_eq!(
            y.request(ITT + 1, p1.ttt, true, false, b"", &mut tags),
            TextStep::Reject(RejectReason::InvalidPduField)
        );
        // ...the right one gets the next piece, then the last.
        let TextStep::Piece(p2) = x.request(ITT, p1.ttt, true, false, b"", &mut tags) else {
            panic!("no second piece")
        };
        assert_eq!((p2.data.len(), p2.last), (4096, false));
        assert_ne!(p2.ttt, p1.ttt);
        let TextStep::Piece(p3) = x.request(ITT, p2.ttt, true, false, b"", &mut tags) else {
            panic!("no third piece")
        };
        assert_eq!(
            (p3.data.len(), p3.last, p3.ttt),
            (10_000 - 8192, true, RESERVED_TAG)
        );
        let joined: Vec<u8> = [p1.data, p2.data, p3.data].concat();
        assert_eq!(joined, reply);
    }

    #[test]
    fn a_request_in_several_pdus_is_gathered() {
        let (mut x, mut tags) = (TextExchange::default(), 1);
        let TextStep::MoreRequest { ttt } =
            x.request(ITT, RESERVED_TAG, false, true, b"SendTar", &mut tags)
        else {
            panic!("the target did not ask for the rest")
        };
        assert_eq!(flags(&Piece::ask(ttt)), 0, "asking: neither F nor C");
        let TextStep::MoreRequest { ttt: t2 } =
            x.request(ITT, ttt, false, true, b"gets=", &mut tags)
        else {
            panic!("the target did not ask for the rest again")
        };
        assert_eq!(
            x.request(ITT, t2, true, false, b"All\0", &mut tags),
            TextStep::Request(b"SendTargets=All\0".to_vec())
        );
    }

    #[test]
    fn a_new_request_gives_up_the_old_exchange() {
        let (mut x, mut tags) = (TextExchange::default(), 1);
        whole(&mut x, b"SendTargets=All\0", &mut tags);
        let p = x.answer(ITT, vec![b'x'; 9000], 4096, &mut tags);
        assert!(!p.last);
        assert_eq!(whole(&mut x, b"A=1\0", &mut tags), b"A=1\0");
        // The old tag is gone.
        assert_eq!(
            x.request(ITT, p.ttt, true, false, b"", &mut tags),
            TextStep::Reject(RejectReason::InvalidPduField)
        );
    }

    #[test]
    fn f_and_c_together_or_a_huge_request_are_refused() {
        let (mut x, mut tags) = (TextExchange::default(), 1);
        assert_eq!(
            x.request(ITT, RESERVED_TAG, true, true, b"A=1\0", &mut tags),
            TextStep::Reject(RejectReason::ProtocolError)
        );
        let big = vec![b'a'; 40 * 1024];
        assert!(matches!(
            x.request(ITT, RESERVED_TAG, false, true, &big, &mut tags),
            TextStep::MoreRequest { .. }
        ));
        let TextStep::MoreRequest { ttt } =
            x.request(ITT, RESERVED_TAG, false, true, &big, &mut tags)
        else {
            panic!()
        };
        assert_eq!(
            x.request(ITT, ttt, false, true, &big, &mut tags),
            TextStep::Reject(RejectReason::ProtocolError)
        );
    }

    #[test]
    fn target_transfer_tags_skip_0_and_the_reserved_tag() {
        let mut c = RESERVED_TAG - 2;
        let tags: Vec<u32> = (0..4).map(|_| next_tag(&mut c)).collect();
        assert_eq!(tags, [RESERVED_TAG - 2, RESERVED_TAG - 1, 1, 2]);
        let mut z = 0;
        assert_eq!(next_tag(&mut z), 1);
    }
}
