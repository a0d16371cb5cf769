#!/usr/bin/env python3
"""Writes the seed inputs fuzz/corpus/<target>/seed-* (examples from the crates' tests,
with the header bytes each target expects). Run from anywhere: python3 fuzz/make_seeds.py"""

import os

HERE = os.path.dirname(os.path.abspath(__file__))

COMPLEX = (
    b"From: a@example.com\r\nSubject: complex\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: MULTIPART/MIXED; boundary=\"outer\"\r\n\r\npreamble\r\n"
    b"--outer\r\nContent-Type: TEXT/PLAIN; charset=us-ascii\r\n\r\npart one\r\n"
    b"--outer\r\nContent-Type: APPLICATION/OCTET-STREAM\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n"
    b"--outer\r\nContent-Type: MESSAGE/RFC822\r\n\r\nFrom: inner@example.com\r\nSubject: inner\r\n"
    b"Content-Type: MULTIPART/ALTERNATIVE; boundary=in\r\n\r\n--in\r\nContent-Type: TEXT/PLAIN\r\n\r\n"
    b"inner plain\r\n--in\r\nContent-Type: TEXT/RICHTEXT\r\n\r\ninner rich\r\n--in--\r\n"
    b"--outer\r\nContent-Type: IMAGE/GIF\r\nContent-Transfer-Encoding: base64\r\n\r\nR0lG\r\n"
    b"--outer\r\nContent-Type: MULTIPART/MIXED; boundary=\"x\"\r\n\r\n--x\r\nContent-Type: IMAGE/JPEG\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n/9j/\r\n--x\r\nContent-Type: MESSAGE/RFC822\r\n\r\n"
    b"Subject: deep\r\n\r\ndeep body\r\n--x--\r\n--outer--\r\n"
)

ENVELOPE_MSG = (
    b"Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\nFrom: Terry Gray <gray@cac.washington.edu>\r\n"
    b"Subject: =?utf-8?q?caf=C3=A9?= IMAP4rev1 WG\r\nTo: imap@cac.washington.edu, g: x@y;\r\n"
    b"cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\r\n"
    b"Message-Id: <B27397-0100000@cac.washington.edu>\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\nline 1\r\nline 2\r\n"
)

QP_8BIT = (
    b"Subject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    b"--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"caf=E9 soft=\r\nbreak\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    b"8bit: \xc3\xa9\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\n\xc3\xbc\r\n--b--\r\n"
)

SEEDS = {
    # [flags, chunking, d0, d1] + client bytes
    "smtp_server": [
        bytes([0, 0, 0, 0]) + b"EHLO client.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n"
        b"DATA\r\nSubject: x\r\n\r\nhi\r\n..dot\r\n.\r\nQUIT\r\n",
        bytes([9, 7, 0, 0]) + b"EHLO c\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"
        b"MAIL FROM:<a@b.example> RET=HDRS ENVID=x+2By SIZE=100 BODY=8BITMIME REQUIRETLS\r\n"
        b"RCPT TO:<g@d.example> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;g+40d.example\r\n"
        b"RCPT TO:<bad@d.example> ORCPT=utf-8;b\\x{E4}d@d.example\r\nBDAT 5\r\nhello"
        b"BDAT 3 LAST\r\n\r\n.RSET\r\nNOOP\r\n",
        bytes([4 | 1, 1, 0, 0]) + b"EHLO c\r\nSTARTTLS\r\nEHLO c\r\nAUTH LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\n"
        b"MAIL FROM:<j\xc3\xb6rg@b.example> SMTPUTF8\r\nRCPT TO:<Postmaster>\r\nDATA\r\nx\r\n.\r\n",
        bytes([2 | 32, 3, 1, 0]) + b"HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<@r.example:f@d.example>\r\n"
        b"RCPT TO:<G@d.example> NOTIFY=NEVER\r\nDATA\r\nbare\nlf\rcr\r\n.\r\n"
        b"VRFY x\r\nHELP\r\nFOO\r\nMAIL FROM:<a@b@c>\r\nBDAT x\r\n*\r\n\r\n.\r\nQUIT\r\n",
        bytes([8 | 1 | 16, 0, 0, 0]) + b"EHLO c\r\nAUTH PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\n"
        b"AUTH LOGIN\r\n*\r\nAUTH PLAIN AGJvYgB4\r\nMAIL FROM:<a@b.example> RET=FULL ENVID=+ZZ\r\n",
    ],
    # [flags, chunking, t0, t1, p] + server bytes ("<TLS>" starts the post-handshake part)
    "smtp_client": [
        bytes([1 | 16 | 32, 0, 1, 0, 8]) + b"220 mx.example ESMTP\r\n250-mx.example\r\n250-PIPELINING\r\n"
        b"250-8BITMIME\r\n250-STARTTLS\r\n250 SIZE 1000\r\n220 2.0.0 ready for TLS\r\n<TLS>"
        b"250-mx.example\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 ENHANCEDSTATUSCODES\r\n"
        b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.0.0 queued\r\n221 bye\r\n",
        bytes([0, 5, 2 | (1 << 2) | (7 << 5) & 0xff, 0, 200]) + b"220 mx ESMTP\r\n"
        b"250-mx\r\n250-DSN\r\n250-SMTPUTF8\r\n250-REQUIRETLS\r\n250 8BITMIME\r\n"
        b"250 ok\r\n250 ok\r\n550 5.1.1 unknown\r\n451 4.3.0 later\r\n354 go ahead\r\n250 ok\r\n"
        b"250 ok\r\n250 ok\r\n354 go\r\n552 5.3.4 too big\r\n221 bye\r\n",
        bytes([2 | 4 | 8 | 16, 1, 3, 0x12, 64]) + b"220 smarthost\r\n250-smarthost\r\n250-AUTH PLAIN LOGIN\r\n"
        b"250 PIPELINING\r\n235 2.7.0 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n250 ok\r\n"
        b"250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n",
        bytes([2 | 8, 0, 1, 0, 255]) + b"220 mx\r\n250-mx\r\n250-STARTTLS\r\n250 AUTH LOGIN\r\n220 go\r\n<TLS>"
        b"250-mx\r\n250 AUTH LOGIN\r\n334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n535 5.7.8 bad\r\n421 4.7.0 closing\r\n",
        bytes([1, 0, 1, 0, 0]) + b"220 mx\r\n502 5.5.2 EHLO?\r\n250 old.example\r\n250 ok\r\n250 ok\r\n"
        b"354 go\r\n250-multi\r\n250 line\r\n",
        bytes([1, 3, 1, 0, 0]) + b"554 5.7.1 go away\r\n",
    ],
    # [flags, chunking, d0, d1] + client bytes; flags bit 0: session mode
    "imap": [
        bytes([0, 0, 0xff, 0xff]) + b"a LOGIN {5}\r\nalice secret\r\nb APPEND INBOX (\\Seen) \"1-Jan-2020 00:00:00 +0000\" {3+}\r\nabc\r\n"
        b"c SEARCH RETURN (MIN MAX COUNT SAVE) CHARSET UTF-8 OR (FROM x SUBJECT {2}\r\nhi\r\n) SINCE 1-Jan-2020 NOT DELETED\r\n"
        b"d UID FETCH 1:*,$ (FLAGS BODY.PEEK[HEADER.FIELDS (Subject)]<0.100> BINARY[1.2] BINARY.SIZE[1]) (CHANGEDSINCE 1 VANISHED)\r\n",
        bytes([16, 2, 0xaa, 0x55]) + b"a SELECT INBOX (QRESYNC (1 2 1:5 (1,3 5,7)))\r\n"
        b"b LIST (SUBSCRIBED) \"\" (\"INBOX\" \"Drafts\") RETURN (CHILDREN SPECIAL-USE STATUS (MESSAGES UIDNEXT))\r\n"
        b"c STATUS &AOk- (MESSAGES UIDNEXT APPENDLIMIT SIZE DELETED-STORAGE)\r\nd STORE 1:3 +FLAGS.SILENT (\\Seen $Junk) (UNCHANGEDSINCE 5)\r\n"
        b"e APPEND INBOX ~{3}\r\n\x00\x01\x02 {2+}\r\nxy\r\nf ENABLE QRESYNC IMAP4rev2\r\ng ID (\"name\" \"x\")\r\n"
        b"h GETQUOTAROOT INBOX\r\ni SETQUOTA \"\" (STORAGE 1)\r\nj RENAME a b\r\nk COPY $ Trash\r\nl UID MOVE 1 Junk\r\n"
        b"m UID EXPUNGE 1:2\r\nn CREATE x (USE (\\Drafts))\r\no AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n",
        bytes([2 | 4, 1, 0, 0]) + b"f LOGIN {999999999999}\r\ng \"quoted {3}\r\nh \"x\\\"\" {2+}\r\n()\r\n"
        b"i {70000+}\r\n" + b"e SEARCH ((((((((((((((((((((((((((((((((((((ALL\r\n",
        bytes([1 | 4, 0, 0, 0]) + b"a CAPABILITY\r\nb LOGIN alice secret\r\nc ENABLE CONDSTORE\r\n"
        b"d SELECT INBOX (CONDSTORE)\r\ne FETCH 1:* (FLAGS ENVELOPE)\r\nf IDLE\r\nDONE\r\ng SEARCH UNSEEN\r\n"
        b"h CLOSE\r\ni NAMESPACE\r\nj APPEND INBOX {3}\r\nabc\r\nk LOGOUT\r\n",
        bytes([1 | 2, 3, 0x6, 0]) + b"a LOGIN alice secret\r\nb STARTTLS\r\nc AUTHENTICATE PLAIN\r\n"
        b"AGFsaWNlAHNlY3JldA==\r\nd EXAMINE INBOX\r\ne UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)\r\n",
        bytes([1 | 4 | 8 | 16, 1, 0x0c, 0]) + b"a LOGIN throttle x\r\nb LOGIN alice secret\r\nj GETQUOTA \"\"\r\n"
        b"c SELECT INBOX\r\nd IDLE\r\nDONE\r\ne STORE 1 +FLAGS (\\Seen)\r\nf APPEND INBOX {999+}\r\n",
    ],
    # "<fetch items>\n<message>"
    "imap_mime": [
        b"BODY.PEEK[1.2]<0.10> BINARY[2] BINARY.SIZE[2] ENVELOPE BODYSTRUCTURE BODY[3.HEADER] BODY[3.1.MIME]\n" + COMPLEX,
        b"BODY[HEADER.FIELDS (From To cc)] BODY[TEXT]<2.3> RFC822.HEADER BODY\n" + ENVELOPE_MSG,
        b"BINARY[1] BINARY.PEEK[2]<1.5> BODY[3.TEXT] BODY[HEADER.FIELDS.NOT (Subject)] RFC822.TEXT\n" + QP_8BIT,
        b"\nSubject: lf\nContent-Type: multipart/mixed; boundary=q\n\n--q\n\nA\n--q--\n",
        b"\nContent-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: in digest\r\n\r\nhi\r\n--d--\r\n",
    ],
    # [flags, date, <search keys>\n<message>]
    "imap_search": [
        bytes([1, 20]) + b"OR FROM alice SUBJECT {5}\r\nhello CC carol BCC eve TO bob\n" + ENVELOPE_MSG,
        bytes([0x80 | 4, 0]) + b"HEADER X-Custom foo NOT (LARGER 100 SMALLER 5) 1:* UID 4 KEYWORD $Junk\n"
        b"X-Custom: Foo-Bar\r\nSubject: Menu\r\n\r\nbody\r\n",
        bytes([0x40, 200]) + b"CHARSET UTF-8 BODY zebra TEXT caf\n" + QP_8BIT,
        bytes([2, 100]) + b"RETURN (MIN COUNT SAVE) SENTSINCE 1-Jan-2024 SENTBEFORE 3-Jan-2024 ON 2-Jan-2024\n" + ENVELOPE_MSG,
        bytes([8, 7]) + b"MODSEQ 10 OLDER 100000 YOUNGER 5 NEW OLD RECENT UNSEEN $\n" + COMPLEX,
    ],
    # [flags, chunking, d0, d1, n] + n-byte message + client bytes
    "pop3": [
        bytes([2, 0, 0, 0, 22]) + b"Subject: z\r\n\r\n.hello\r\n" + b"USER alice\r\nPASS secret\r\nSTAT\r\nLIST\r\n"
        b"UIDL\r\nRETR 1\r\nTOP 5 1\r\nRETR 5\r\nDELE 2\r\nRSET\r\nDELE 3\r\nLIST 5\r\nUIDL 2\r\nNOOP\r\nQUIT\r\n",
        bytes([1, 1, 0, 0, 0]) + b"CAPA\r\nSTLS\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nLIST 1\r\nRETR 4\r\nQUIT\r\n",
        bytes([2 | 4, 5, 0xff, 0, 3]) + b".\r\n" + b"AUTH\r\nAUTH PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\nTOP 3 2\r\n"
        b"RETR 0\r\nRETR 01\r\nDELE 99999999999999999999999\r\nTOP 1 -1\r\nAPOP a b\r\nDELE 1\r\nQUIT\r\n",
        bytes([2 | 8 | 16, 0, 0, 0, 0]) + b"USER busy\r\nPASS secret\r\nUSER temp\r\nPASS secret\r\n"
        b"USER throttle\r\nPASS x\r\n",
    ],
    # any bytes; NUL separates TXT records / DSN fields
    "delivery_parsers": [
        b"v=STSv1; id=20160831085700Z;\x00v=TLSRPTv1; rua=mailto:tlsrpt@example.com,https://r.example/x;\x00"
        b"mx.example.net\x00b\x00e+2B1",
        b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n",
        b"v=TLSRPTv1;rua=mailto:a@example.com,mailto:b%40example.org?subject=x",
        b"rfc822;a+2Bb@example.com",
        b"utf-8;j\\x{F6}rg@example.com",
        b"SUCCESS,DELAY",
        b"Received: from a\r\nReceived: from b\r\n\tby c\r\n\r\nReceived: body\r\n",
        QP_8BIT,
        b"Subject: x\n\nplain 8bit: \xc3\xa9\n.line\n" + b"\x00550 5.1.1 <x@y>: unknown\r\ninjected: 1\x00host",
    ],
}


def main():
    for target, seeds in SEEDS.items():
        d = os.path.join(HERE, "corpus", target)
        os.makedirs(d, exist_ok=True)
        for i, s in enumerate(seeds):
            with open(os.path.join(d, f"seed-{i:02}"), "wb") as f:
                f.write(s)
    print("wrote", sum(len(s) for s in SEEDS.values()), "seeds")


if __name__ == "__main__":
    main()
