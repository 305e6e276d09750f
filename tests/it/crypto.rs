//! Encryption: the reference's known-answer vectors V1 and V2, round trips over random
//! lengths with multibyte text, and a distinct error for every failure.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use huixin::wechat::crypto::{CryptoError, MsgCrypt};
use huixin::wechat::signature::sign;
use rand::RngExt;

const V1_TOKEN: &str = "123456";
const V1_KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
const V1_APPID: &str = "wx49f0ab532d5d035a";
const V1_ENCRYPT: &str = "RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0=";

fn v1() -> MsgCrypt {
    MsgCrypt::new(V1_TOKEN, V1_KEY, V1_APPID, &[]).unwrap()
}

#[test]
fn v1_decrypts_to_the_known_plaintext() {
    let decrypted = v1()
        .verify_and_decrypt(
            "1411525903",
            "461056294",
            "74d92dfeb87ba7c714f89d98870ae5eb62dff26d",
            V1_ENCRYPT,
        )
        .unwrap();
    let expected = "<xml><ToUserName><![CDATA[wx49f0ab532d5d035a]]></ToUserName>\n\
<FromUserName><![CDATA[messense]]></FromUserName>\n\
<CreateTime>1411525903</CreateTime>\n\
<MsgType><![CDATA[text]]></MsgType>\n\
<Content><![CDATA[test]]></Content>\n\
<MsgId>4363689963896700987</MsgId>\n\
<AgentID>1</AgentID>\n\
</xml>";
    assert_eq!(String::from_utf8(decrypted.xml).unwrap(), expected);
    assert_eq!(decrypted.app_id, V1_APPID);
    assert_eq!(
        sign(&[V1_TOKEN, "1411525903", "461056294"]),
        "6c729cc5480fab0c2e594b7e25a93d2dbef6ab97"
    );
}

#[test]
fn v1_encrypts_to_the_known_ciphertext() {
    let plaintext = "<xml>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[test]]></Content>\n<FromUserName><![CDATA[wx49f0ab532d5d035a]]></FromUserName>\n<ToUserName><![CDATA[messense]]></ToUserName>\n<AgentID>1</AgentID>\n<CreateTime>1411525903</CreateTime>\n</xml>";
    let crypt = v1();
    let encrypt = crypt.encrypt_with_prefix(b"1234567890123456", plaintext.as_bytes(), V1_APPID);
    assert_eq!(
        encrypt,
        "9s4gMv99m88kKTh/H8IdkOiMg6bisoy3ypwy9H4hvSPe9nsGaqyw5hhSjdYbcrKk+j3nba4HMOTzHrluLBYqxgNcBqGsL8GqxlhZgURnAtObvesEl5nZ+uBE8bviY0LWke8Zy9V/QYKxNV2FqllNXcfmstttyIkMKCCmVbCFM2JTF5wY0nFhHZSjPUL2Q1qvSUCUld+/WIXrx0oyKQmpB6o8NRrrNrsDf03oxI1p9FxUgMnwKKZeOA/uu+2IEvEBtb7muXsVbwbgX05UPPJvFurDXafG0RQyPR+mf1nDnAtQmmNOuiR5MIkdQ39xn1vWwi1O5oazPoQJz0nTYjxxEE8kv3kFxtAGVRe3ypD3WeK2XeFYFMNMpatF9XiKzHo3"
    );
    assert_eq!(
        crypt.msg_signature("1411525903", "461056294", &encrypt),
        "407518b7649e86ef23978113f92d27afa9296533"
    );
}

#[test]
fn v2_known_answers_and_byte_length_prefix() {
    let crypt = MsgCrypt::new(
        "pamtest",
        "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
        "wxb11529c136998cb6",
        &[],
    )
    .unwrap();
    let plaintext = "我是中文abcd123";
    let encrypt = crypt.encrypt_with_prefix(
        b"aaaabbbbccccdddd",
        plaintext.as_bytes(),
        "wxb11529c136998cb6",
    );
    assert_eq!(
        encrypt,
        "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg=="
    );
    let signature = crypt.msg_signature("1409304348", "xxxxxx", &encrypt);
    assert_eq!(signature, "82c962d39941aa48552f90ef55aa323dc620cc10");
    assert_eq!(
        sign(&["pamtest", "1409304348", "xxxxxx"]),
        "76480565cbe296026c53aaacd1ad523a1ddba24f"
    );
    let decrypted = crypt
        .verify_and_decrypt("1409304348", "xxxxxx", &signature, &encrypt)
        .unwrap();
    assert_eq!(decrypted.xml, plaintext.as_bytes());
    assert_eq!(
        crypt.verify_and_decrypt("1409304348", "xxxxxx", "12345", &encrypt),
        Err(CryptoError::Signature)
    );
}

/// Random text of `n` bytes or a little less, mixing ASCII, CJK and emoji (1, 3 and 4 bytes).
fn multibyte_text(n: usize) -> String {
    let alphabet = [
        'a', 'Z', '7', ' ', '<', '回', '信', '中', '文', '😀', '🚀', 'é',
    ];
    let mut rng = rand::rng();
    let mut s = String::new();
    loop {
        let c = alphabet[rng.random_range(0..alphabet.len())];
        if s.len() + c.len_utf8() > n {
            break;
        }
        s.push(c);
    }
    s
}

#[test]
fn round_trips_over_random_lengths_with_multibyte_text() {
    let crypt = v1();
    let mut rng = rand::rng();
    let mut lengths: Vec<usize> = (0..=70).collect();
    lengths.extend((0..300).map(|_| rng.random_range(0..=4000)));
    lengths.push(4000);
    for n in lengths {
        let text = multibyte_text(n);
        let encrypt = crypt.encrypt(text.as_bytes(), V1_APPID);
        let raw = B64.decode(&encrypt).unwrap();
        // Padded to 32 bytes, never just to AES's 16.
        assert_eq!(raw.len() % 32, 0, "length {n}");
        let decrypted = crypt.decrypt(&encrypt).unwrap();
        assert_eq!(decrypted.xml, text.as_bytes(), "length {n}");
        let sig = crypt.msg_signature("1", "2", &encrypt);
        assert!(crypt.verify_and_decrypt("1", "2", &sig, &encrypt).is_ok());
    }
}

#[test]
fn padding_of_a_full_block_is_32_bytes() {
    // 16 + 4 + xml + appid == 64 exactly: a whole block of padding follows.
    let crypt = v1();
    let xml = "x".repeat(64 - 20 - V1_APPID.len());
    let raw = B64.decode(crypt.encrypt(xml.as_bytes(), V1_APPID)).unwrap();
    assert_eq!(raw.len(), 96);
    assert_eq!(
        crypt.decrypt(&B64.encode(&raw)).unwrap().xml,
        xml.as_bytes()
    );
}

/// Builds a ciphertext from an arbitrary (already padded) plaintext, bypassing our encoder.
fn raw_encrypt(plain: &[u8]) -> String {
    use aes::cipher::{BlockModeEncrypt, KeyIvInit, block_padding::NoPadding};
    let key = huixin::wechat::crypto::decode_aes_key(V1_KEY).unwrap();
    let mut buf = plain.to_vec();
    let len = buf.len();
    let enc = cbc::Encryptor::<aes::Aes256>::new_from_slices(&key, &key[..16]).unwrap();
    let ct = enc
        .encrypt_padded::<NoPadding>(&mut buf, len)
        .unwrap()
        .to_vec();
    B64.encode(ct)
}

fn framed(xml: &[u8], appid: &[u8], len_prefix: u32) -> Vec<u8> {
    let mut p = b"0123456789abcdef".to_vec();
    p.extend_from_slice(&len_prefix.to_be_bytes());
    p.extend_from_slice(xml);
    p.extend_from_slice(appid);
    p
}

fn pad32(mut p: Vec<u8>) -> Vec<u8> {
    let pad = 32 - p.len() % 32;
    p.resize(p.len() + pad, pad as u8);
    p
}

#[test]
fn every_failure_is_a_distinct_error() {
    let crypt = v1();
    let ok = framed(b"<xml/>", V1_APPID.as_bytes(), 6);

    // -40001
    assert_eq!(
        crypt
            .verify_and_decrypt("1", "2", "0000", &raw_encrypt(&pad32(ok.clone())))
            .unwrap_err()
            .code(),
        -40001
    );
    // -40004
    assert_eq!(
        MsgCrypt::new("t", "too-short", V1_APPID, &[])
            .unwrap_err()
            .code(),
        -40004
    );
    // -40005: addressed to another app
    let other = pad32(framed(b"<xml/>", b"wxsomebodyelse0000", 6));
    assert!(matches!(
        crypt.decrypt(&raw_encrypt(&other)),
        Err(CryptoError::AppId { .. })
    ));
    // -40007: a pad byte that disagrees with the pad length
    let mut bad_pad = pad32(ok.clone());
    let n = bad_pad.len();
    bad_pad[n - 2] ^= 1;
    assert!(matches!(
        crypt.decrypt(&raw_encrypt(&bad_pad)),
        Err(CryptoError::Decrypt(_))
    ));
    // -40007: pad length 0 and 33
    let mut zero_pad = ok.clone();
    zero_pad.resize(64, 0);
    assert!(matches!(
        crypt.decrypt(&raw_encrypt(&zero_pad)),
        Err(CryptoError::Decrypt(_))
    ));
    let mut big_pad = ok.clone();
    big_pad.resize(64, 33);
    assert!(matches!(
        crypt.decrypt(&raw_encrypt(&big_pad)),
        Err(CryptoError::Decrypt(_))
    ));
    // -40007: ciphertext not a multiple of 16
    assert!(matches!(
        crypt.decrypt(&B64.encode([1u8; 20])),
        Err(CryptoError::Decrypt(_))
    ));
    // -40008: length prefix larger than what follows
    let lying = pad32(framed(b"<xml/>", V1_APPID.as_bytes(), 10_000));
    assert!(matches!(
        crypt.decrypt(&raw_encrypt(&lying)),
        Err(CryptoError::IllegalBuffer(_))
    ));
    // -40008: shorter than the 20-byte header
    assert!(matches!(
        crypt.decrypt(&raw_encrypt(&pad32(b"0123456789".to_vec()))),
        Err(CryptoError::IllegalBuffer(_))
    ));
    // -40010
    assert_eq!(crypt.decrypt("not base64 !!").unwrap_err().code(), -40010);

    // The decoder accepts what is right.
    assert_eq!(
        crypt.decrypt(&raw_encrypt(&pad32(ok))).unwrap().xml,
        b"<xml/>"
    );
}

#[test]
fn extra_app_ids_are_accepted_and_reported() {
    let crypt = MsgCrypt::new(
        V1_TOKEN,
        V1_KEY,
        V1_APPID,
        &["wxcomponent0000001".to_owned()],
    )
    .unwrap();
    let encrypt = crypt.encrypt(b"<xml/>", "wxcomponent0000001");
    assert_eq!(
        crypt.decrypt(&encrypt).unwrap().app_id,
        "wxcomponent0000001"
    );
    let stranger = crypt.encrypt(b"<xml/>", "wxstranger");
    assert_eq!(crypt.decrypt(&stranger).unwrap_err().code(), -40005);
}
