#!/usr/bin/env python3
"""Signs COUNT requests as WeChat sends them, one per line: "path?query<TAB>body". Every request
is a distinct text message from a distinct user (users and MsgIds from SEED), with the current
timestamp and a fresh nonce; in safe mode the body is encrypted (needs `cryptography`).

    sign.py SEED OUT COUNT TOKEN MODE AES_KEY APP_ID

Used by scripts/bench-traffic.sh and scripts/bench-scale.sh."""
import base64, hashlib, os, secrets, struct, sys, time
seed, out, count, token, mode = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
aes_key, app_id = base64.b64decode(sys.argv[6] + "="), sys.argv[7].encode()
if mode == "safe":
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
def sha1(*parts):
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()
def encrypt(xml):
    plain = os.urandom(16) + struct.pack(">I", len(xml)) + xml + app_id
    pad = 32 - len(plain) % 32
    plain += bytes([pad]) * pad
    enc = Cipher(algorithms.AES(aes_key), modes.CBC(aes_key[:16])).encryptor()
    return base64.b64encode(enc.update(plain) + enc.finalize()).decode()
ts = str(int(time.time()))
with open(out, "w", encoding="utf-8") as f:
    for i in range(count):
        n = seed * count + i
        nonce = secrets.token_hex(8)
        user = f"o_bench_{n:09d}"
        body = (f"<xml><ToUserName><![CDATA[gh_bench]]></ToUserName>"
                f"<FromUserName><![CDATA[{user}]]></FromUserName><CreateTime>{ts}</CreateTime>"
                f"<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hello huixin {n}]]></Content>"
                f"<MsgId>{7000000000000000000 + n}</MsgId></xml>")
        query = f"signature={sha1(token, ts, nonce)}&timestamp={ts}&nonce={nonce}&openid={user}"
        if mode == "safe":
            encrypted = encrypt(body.encode())
            body = (f"<xml><ToUserName><![CDATA[gh_bench]]></ToUserName>"
                    f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>")
            query += f"&encrypt_type=aes&msg_signature={sha1(token, ts, nonce, encrypted)}"
        f.write(f"/wechat?{query}\t{body}\n")
