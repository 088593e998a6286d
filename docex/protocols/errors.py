"""Every refusal in docex has a stable code and a one-line message a person understands.
The catalogue below is the single list: the hub's rejections, the agent's quarantine,
the CLI's exit messages and the dashboard all speak these codes."""

from __future__ import annotations

from docex.pki.errors import PkiError

# code -> (中文, English). Keep codes stable: scripts and alert rules rely on them.
CODES: dict[str, tuple[str, str]] = {
    "signature_invalid": ("签名无效或内容已被篡改", "the signature does not verify or the content was changed"),
    "certificate_untrusted": ("证书不是受信任的发证机构签发的", "the certificate is not from a trusted CA"),
    "certificate_revoked": ("证书已被吊销", "the certificate has been revoked"),
    "certificate_expired": ("证书已过期或尚未生效", "the certificate has expired or is not yet valid"),
    "wrong_certificate_role": ("证书用途不符", "the certificate is not for this use"),
    "sender_mismatch": ("签名单位与发送单位不一致", "the signer is not the unit that sent it"),
    "not_a_recipient": ("本单位不是该公文的收文单位", "this unit is not a recipient of the document"),
    "decryption_failed": ("无法解密：内容损坏或被篡改", "cannot decrypt: damaged or changed"),
    "digest_mismatch": ("文件摘要不符：文件已被改动", "a file's digest does not match: it was changed"),
    "malformed_envelope": ("公文封包格式错误", "the envelope is not well formed"),
    "unsupported_version": ("不支持的协议版本", "unsupported protocol version"),
    "too_large": ("超过大小限制", "over the size limit"),
    "unsafe_filename": ("文件名不安全", "unsafe file name in the package"),
    "duplicate": ("重复的公文编号（重放）", "duplicate message id (replay)"),
    "unknown_recipient": ("收文单位不存在", "unknown recipient"),
    "unknown_sender": ("发文单位未登记", "the sending unit is not registered"),
    "recipient_disabled": ("收文单位已停用", "the recipient is disabled"),
    "sender_disabled": ("发文单位已停用", "the sending unit is disabled"),
    "classified": ("涉密公文不得在本网传输", "classified documents are not allowed on this network"),
    "bad_metadata": ("公文要素不完整或不合规", "document metadata missing or invalid"),
    "seal_invalid": ("电子印章验证失败", "the electronic seal does not verify"),
    "directory_untrusted": ("通讯录签名无效", "the directory is not signed by the hub"),
    "receipt_invalid": ("回执无效", "invalid receipt"),
    "paper_route": ("收文单位不在网上，请以纸质方式送达", "the recipient is off the network: send on paper"),
    "crl_missing": ("缺少当前的证书吊销列表", "no current CRL"),
    "no_passphrase": ("缺少密钥口令", "no key passphrase"),
    "key_locked": ("私钥已加密，需要口令", "the private key needs its passphrase"),
    "key_unreadable": ("无法读取私钥", "cannot read the private key"),
    "no_credentials": ("缺少证书或密钥文件", "certificate or key files missing"),
    "ca_exists": ("发证机构已存在", "a CA already exists here"),
    "no_ca": ("未找到发证机构", "no CA here"),
    "unknown_serial": ("没有该序列号的证书", "no certificate with that serial"),
    "already_revoked": ("证书已吊销", "already revoked"),
    "bad_reason": ("吊销原因无效", "invalid revocation reason"),
    "bad_address": ("地址格式错误", "invalid address"),
    "weak_key": ("密钥强度不足", "the key is too weak"),
    "certificate_unreadable": ("无法读取证书文件", "cannot read the certificate file"),
    "crl_unreadable": ("无法读取证书吊销列表", "cannot read the CRL file"),
    "no_recipients": ("没有收文单位", "no recipients given"),
    "seal_modified": ("盖章后文件被改动", "the document was changed after it was sealed"),
    "seal_address_mismatch": ("印章不属于发文单位", "the seal is not the sending unit's"),
    "seal_missing": ("文件没有电子印章", "the document carries no electronic seal"),
    "crl_stale": ("证书吊销列表已过期，请先更新", "the CRL is past its next update: refresh it first"),
    "seal_renewal_needed": ("印章的存证时间戳即将或已经过期，需要续期", "the seal's archive timestamp expires soon or has expired: renew it"),
    "seal_image_invalid": ("印模图像无效", "the seal impression image is not usable"),
    "seal_position_invalid": ("盖章位置无效", "the seal position is not on the page"),
    "pdf_unreadable": ("无法读取 PDF 文件", "the PDF cannot be read"),
    "timestamp_unavailable": ("时间戳服务不可用", "the time-stamping authority cannot be reached"),
    "font_missing": ("缺少所需字体", "a required font is missing"),
    "unit_exists": ("单位已登记", "the unit is already registered"),
    "bad_csv": ("单位名录文件格式错误", "the unit list cannot be read as CSV"),
    "unknown_user": ("没有该登录名", "no such dashboard login"),
    "ambiguous_id": ("编号前缀不唯一，请多输入几位", "that id prefix matches several documents"),
    "bad_backup": ("备份文件无效或无法恢复到此处", "not a usable hub backup here"),
    "internal": ("内部错误，请将此行交给信息中心", "internal error: give this line to the information centre"),
    "unknown_document": ("没有这份公文", "no such document"),
    "already_done": ("已经签收或退回", "already signed for or returned"),
    "no_hub": ("不是交换中心目录", "not a hub home"),
    "no_agent": ("不是单位终端目录", "not an agent home"),
    "hub_exists": ("交换中心已存在", "a hub already exists here"),
    "io_error": ("文件读写错误", "a file could not be read or written"),
    "broker_unavailable": ("无法连接消息服务器", "the message broker cannot be reached"),
    "tls_required": ("非本机访问必须使用 TLS 加密", "plain connections only on localhost: TLS is required"),
    "credentials_exist": ("该目录已有证书，未覆盖", "that folder already holds credentials; nothing overwritten"),
    "dead_letter": ("消息多次处理失败，已转入死信队列", "a message failed repeatedly and was dead-lettered"),
    "recall_invalid": ("撤销声明无效", "invalid recall"),
    "recalled": ("公文已被发文单位撤销", "the sender recalled the document"),
    "not_logged_in": ("请先登录", "please log in first"),
    "bad_request": ("证书申请无效", "the certificate request is not valid"),
    "rate_limited": ("请求过于频繁，请稍后再试", "too many requests; try again later"),
    "unknown_request": ("没有该证书申请", "no such certificate request"),
    "fingerprint_mismatch": ("指纹与申请不符", "the fingerprint does not match the request"),
    "request_closed": ("该申请已被拒绝或被取代", "the request was refused or superseded"),
    "pending_approval": ("等待信息中心批准", "waiting for the information centre's approval"),
    "hub_unreachable": ("无法连接交换中心", "the hub cannot be reached"),
    "login_failed": ("证书或口令错误", "wrong certificate or passphrase"),
    "forbidden": ("无权进行此操作", "not allowed"),
}


class DocexError(PkiError):
    """A protocol-level refusal; shares PkiError's (code, message) so callers catch one type."""


def describe(code: str, lang: str = "zh") -> str:
    zh, en = CODES.get(code, ("", ""))
    return zh if lang == "zh" else en
