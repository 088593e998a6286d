"""Sample data shared by several suites."""

# A full set of GB/T 9704 fields, as `docex compose --meta` and the manifest take them.
GBT9704_META = {
    "copy_number": "000012",
    "classification": "",
    "priority": "特急",
    "issuer": "阳山县人民政府",
    "doc_number": "阳府〔2011〕12号",
    "signer": "张三",
    "title": "阳山县人民政府关于推行电子公文交换系统的通知",
    "main_recipients": ["各乡镇人民政府", "县府直属各单位"],
    "attachments": ["阳山县电子公文交换系统实施方案", "试点单位名单"],
    "signature_name": "阳山县人民政府",
    "date": "2011-09-16",
    "note": "此件公开发布",
    "cc": ["县委办公室", "县人大常委会办公室", "县政协办公室"],
    "printer": "阳山县人民政府办公室",
    "print_date": "2011-09-16",
}


def one_line_pdf(text: str) -> bytes:
    """A one-page PDF holding `text` (ASCII), to seal in tests."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=14)
    pdf.cell(text=text)
    return bytes(pdf.output())
