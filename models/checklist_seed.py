"""Seed checklists in Vietnamese, from rules-reference §8 (and §1.8, §3, §4 for the annual inspection).

Design: each seeded template, version, section and item gets a fixed id derived from its code
(uuid5), so central and every field node agree on the same records even if both seed. Seeding is
idempotent: a template that already exists is left alone (a committee may have edited it by making
new versions). Points of the regular-meeting sheet follow the Phú Thọ 100-point split (preparation
15, attendance 20, conduct 45, closing 20); the per-item split inside each part is our [I] draft,
editable in the template editor. Items are tuples: (code, text, type, points, extra options).
"""
from __future__ import annotations

import json
import uuid

from .base import db
from .checklists import ChecklistTemplate, TemplateItem, TemplateSection, TemplateVersion, publish

SEED_NAMESPACE = uuid.UUID("0190a000-0000-7000-8000-00000000c4e0")


def seed_id(*parts: str) -> str:
    """A fixed id for a seeded record, the same on every node."""
    return str(uuid.uuid5(SEED_NAMESPACE, "/".join(parts)))


def _yn(code, text, points, src, **kw):
    """A yes/no item tuple with its source citation."""
    return (code, text, "yes_no", points, {"source": src, **kw})


def _choices(*labels_points):
    """Choices JSON from (label, points) pairs, valued 1..n."""
    return json.dumps([{"value": str(i), "label": label, "points": pts}
                       for i, (label, pts) in enumerate(labels_points, start=1)], ensure_ascii=False)


SCALE_1_5 = _choices(("1 — Yếu", 0), ("2 — Trung bình", 0), ("3 — Khá", 0), ("4 — Tốt", 0), ("5 — Rất tốt", 0))

PREPARATION = {
    "code": "chuan-bi", "kind": "chuan_bi", "name": "Chuẩn bị sinh hoạt chi bộ (họp chi ủy)",
    "description": "Danh mục việc chi ủy (hoặc bí thư, phó bí thư) chuẩn bị trước buổi sinh hoạt.",
    "total": 0,
    "sections": [
        ("Họp chi ủy và chuẩn bị nội dung", [
            _yn("A1", "Chi ủy (hoặc bí thư, phó bí thư nơi không có chi ủy) đã họp trước để thống nhất nội dung sinh hoạt", 0, "12-HD, tiêu chí 2; 42-HD", required=True),
            ("A1.ngay", "Ngày họp chi ủy", "datetime", 0, {"source": "12-HD; 42-HD"}),
            _yn("A2", "Bí thư/phó bí thư trực tiếp chuẩn bị (hoặc phân công chi ủy viên chuẩn bị) nội dung", 0, "12-HD, tiêu chí 2; 42-HD", required=True),
            ("A2.nguoi", "Người chuẩn bị nội dung", "text", 0, {"source": "42-HD"}),
            _yn("A3", "Có dự thảo nghị quyết/kết luận trước khi sinh hoạt", 0, "12-HD, tiêu chí 2; 42-HD"),
            _yn("A4", "Đã xác định nội dung trọng tâm cần thảo luận, biểu quyết (vấn đề mới, phức tạp)", 0, "42-HD"),
            _yn("A5", "Đã lựa chọn nội dung tự phê bình và phê bình (nếu có)", 0, "Thực tiễn", allow_na=True),
        ]),
        ("Thông báo và tài liệu", [
            _yn("A6", "Thông báo thời gian, địa điểm, nội dung tới đảng viên và cấp ủy viên cấp trên theo dõi chi bộ", 0, "42-HD", required=True),
            _yn("A7", "Tài liệu gửi/đăng (Sổ tay đảng viên điện tử) trước ít nhất 01 ngày", 0, "42-HD"),
            ("A8", "Sinh hoạt đúng lịch cố định hằng tháng của chi bộ", "computed", 0, {"computed_source": "on_schedule", "source": "Thực tiễn"}),
        ]),
    ],
}

REGULAR = {
    "code": "thuong-ky-100", "kind": "thuong_ky", "name": "Phiếu chấm điểm sinh hoạt chi bộ thường kỳ (100 điểm)",
    "description": "Thang 100 điểm: chuẩn bị 15, điểm danh 20, tiến hành 45, kết thúc 20 (theo mẫu Phú Thọ, 12-HD/BTCTW).",
    "total": 100,
    "sections": [
        ("I. Chuẩn bị (15 điểm)", [
            _yn("A1", "Chi ủy (hoặc bí thư, phó bí thư) đã họp trước để thống nhất nội dung sinh hoạt", 3, "12-HD, tiêu chí 2", required=True),
            _yn("A2", "Bí thư/phó bí thư trực tiếp chuẩn bị hoặc phân công chi ủy viên chuẩn bị nội dung", 2, "12-HD, tiêu chí 2; 42-HD"),
            _yn("A3", "Có dự thảo nghị quyết/kết luận trước khi sinh hoạt", 3, "12-HD, tiêu chí 2"),
            _yn("A4", "Đã xác định nội dung trọng tâm cần thảo luận, biểu quyết", 2, "42-HD"),
            _yn("A6", "Thông báo thời gian, địa điểm, nội dung tới đảng viên và cấp ủy viên cấp trên theo dõi", 2, "42-HD"),
            _yn("A7", "Tài liệu gửi trước ít nhất 01 ngày", 1, "42-HD"),
            ("A8", "Sinh hoạt đúng lịch cố định hằng tháng", "computed", 2, {"computed_source": "on_schedule", "source": "Thực tiễn"}),
        ]),
        ("II. Điểm danh (20 điểm)", [
            ("B6", "Tỷ lệ đảng viên dự (không tính đảng viên miễn sinh hoạt) đạt ngưỡng của bộ quy tắc", "computed", 10,
             {"computed_source": "attendance_rate", "source": "12-HD, tiêu chí 1", "help_text": "Tự tính từ điểm danh."}),
            ("B5", "Không có đảng viên vắng không lý do", "computed", 5, {"computed_source": "unexcused_count", "source": "12-HD, tiêu chí 1"}),
            _yn("B7", "Không có đảng viên vắng có lý do quá 03 lần liên tiếp trong năm", 5, "12-HD, tiêu chí 1"),
            ("B8", "Đại biểu cấp trên dự (họ tên, chức vụ)", "text", 0, {"source": "Thực tiễn"}),
            ("B10", "Thư ký buổi sinh hoạt", "text", 0, {"source": "09-HD"}),
        ]),
        ("III. Tiến hành (45 điểm)", [
            _yn("C1", "Thông tin thời sự; phổ biến, quán triệt văn bản cấp trên", 4, "09-HD"),
            _yn("C2", "Nhận xét tình hình tư tưởng đảng viên, quần chúng", 4, "09-HD"),
            _yn("C3", "Đánh giá kết quả thực hiện nghị quyết/nhiệm vụ tháng trước (ưu điểm, hạn chế, nguyên nhân)", 5, "09-HD; 42-HD; 12-HD, tiêu chí 5"),
            _yn("C4", "Học tập và làm theo tư tưởng, đạo đức, phong cách Hồ Chí Minh", 3, "09-HD; Chỉ thị 05"),
            _yn("C5", "Liên hệ việc thực hiện Nghị quyết Trung ương 4, KL 21-KL/TW, QĐ 37-QĐ/TW", 2, "Thực tiễn", allow_na=True),
            _yn("C6", "Đề ra nhiệm vụ, giải pháp tháng tới; phân công đảng viên thực hiện", 5, "09-HD; 42-HD"),
            ("C7", "Nhiều đảng viên phát biểu (tỷ lệ đảng viên có mặt phát biểu)", "computed", 6,
             {"computed_source": "speakers", "source": "12-HD, tiêu chí 3", "help_text": "Nhập tỷ lệ % nếu chưa ghi nhận phát biểu trên máy."}),
            ("C8", "Có ý kiến tự phê bình và phê bình", "computed", 4, {"computed_source": "self_criticism_count", "source": "Thực tiễn"}),
            _yn("C9", "Biểu dương, nhắc nhở, phê bình đảng viên (nếu có)", 2, "12-HD, tiêu chí 3", allow_na=True),
            ("C10", "Chủ trì điều hành: gợi mở, tập trung vấn đề trọng tâm, không làm thay, không áp đặt", "score", 5, {"source": "Thực tiễn"}),
            _yn("C11", "Thực hiện nguyên tắc tập trung dân chủ; ý kiến thiểu số được ghi nhận, bảo lưu", 3, "12-HD, tiêu chí 4"),
            _yn("C12", "Công tác đảng viên (giới thiệu học lớp nhận thức, kết nạp, chuyển chính thức) nếu có", 2, "Thực tiễn", allow_na=True),
        ]),
        ("IV. Kết thúc (20 điểm)", [
            _yn("D1", "Chủ trì kết luận từng nội dung", 3, "09-HD"),
            _yn("D2", "Biểu quyết thông qua nghị quyết/kết luận (chỉ đảng viên chính thức biểu quyết)", 4, "Điều lệ Đảng, Điều 5"),
            _yn("D3", "Thư ký đọc lại biên bản; chi bộ thông qua", 4, "Thực tiễn"),
            _yn("D4", "Biên bản ghi đúng mẫu, đầy đủ diễn biến, tên người phát biểu; đủ chữ ký", 4, "12-HD, tiêu chí 3"),
            ("D5", "Thời lượng đạt tối thiểu của bộ quy tắc (90 phút; 120 phút nếu kết hợp chuyên đề)", "computed", 5,
             {"computed_source": "duration_minutes", "source": "12-HD, tiêu chí 3; 42-HD"}),
        ]),
    ],
}

THEMATIC = {
    "code": "chuyen-de-100", "kind": "chuyen_de", "name": "Phiếu chấm điểm sinh hoạt chuyên đề (100 điểm)",
    "description": "Chuẩn bị 25, tiến hành 55, kết thúc 20 (bản nháp theo hướng dẫn sinh hoạt chuyên đề; cấp ủy điều chỉnh).",
    "total": 100,
    "sections": [
        ("I. Chuẩn bị (25 điểm)", [
            ("T1", "Tên chuyên đề", "text", 0, {"source": "hcmute", "required": True}),
            _yn("T1.kh", "Chuyên đề thuộc kế hoạch sinh hoạt chuyên đề năm/quý", 5, "hcmute"),
            ("T2", "Quý thực hiện", "single_choice", 0, {"choices_json": _choices(("Quý I", 0), ("Quý II", 0), ("Quý III", 0), ("Quý IV", 0)), "source": "Nghệ An"}),
            ("T3", "Hình thức tổ chức", "single_choice", 0, {"choices_json": _choices(("Tổ chức riêng", 0), ("Kết hợp với sinh hoạt thường kỳ", 0)), "source": "42-HD"}),
            ("T4", "Đảng viên được phân công chuẩn bị đề dẫn (họ tên)", "text", 0, {"source": "hcmute"}),
            _yn("T5", "Bí thư/cấp ủy viên đã trao đổi mục đích, yêu cầu, phương pháp với người chuẩn bị", 5, "hcmute"),
            _yn("T6", "Dự thảo chuyên đề bằng văn bản được chi ủy/bí thư thông qua trước", 10, "hcmute"),
            _yn("T7", "Dự thảo gửi đảng viên nghiên cứu trước", 5, "hcmute; 42-HD"),
        ]),
        ("II. Tiến hành (55 điểm)", [
            ("T8", "Tỷ lệ đảng viên dự đạt ngưỡng của bộ quy tắc", "computed", 15, {"computed_source": "attendance_rate", "source": "12-HD, tiêu chí 1"}),
            _yn("T9", "Bí thư nêu mục đích, yêu cầu buổi sinh hoạt", 5, "12-HD"),
            _yn("T10", "Đảng viên được phân công trình bày dự thảo chuyên đề", 5, "12-HD"),
            ("T11", "Nhiều đảng viên phát biểu (tỷ lệ đảng viên có mặt phát biểu)", "computed", 10, {"computed_source": "speakers", "source": "12-HD"}),
            _yn("T11.lh", "Ý kiến phát biểu có liên hệ thực tiễn đơn vị và bản thân", 5, "Suy luận"),
            ("T14", "Ý nghĩa, tác dụng, chất lượng chuyên đề", "score", 5, {"source": "Suy luận"}),
            ("T15", "Thời lượng đạt tối thiểu của bộ quy tắc", "computed", 10, {"computed_source": "duration_minutes", "source": "42-HD"}),
        ]),
        ("III. Kết thúc (20 điểm)", [
            _yn("T12", "Bí thư kết luận; nêu nội dung cần tiếp thu để hoàn thiện chuyên đề", 5, "Suy luận"),
            _yn("T13", "Có nghị quyết/kết luận vận dụng vào nhiệm vụ, phân công thực hiện", 10, "Suy luận"),
            _yn("T16", "Biên bản chuyên đề đúng mẫu, thông qua tại chỗ", 5, "Mẫu biên bản"),
        ]),
    ],
}

SUPERVISION = {
    "code": "giam-sat", "kind": "giam_sat", "name": "Phiếu giám sát của cấp ủy viên cấp trên dự sinh hoạt chi bộ",
    "description": "Cấp ủy viên cấp trên ghi nhận tại buổi sinh hoạt; điểm của người giám sát đặt cạnh điểm chi bộ tự chấm.",
    "total": 0,
    "sections": [
        ("Thông tin giám sát", [
            ("S1", "Người dự: họ tên, chức vụ", "text", 0, {"source": "Thực tiễn", "required": True}),
            ("S2", "Hình thức", "single_choice", 0, {"choices_json": _choices(("Giám sát thường xuyên", 0), ("Giám sát chuyên đề", 0), ("Kiểm tra", 0)), "source": "QĐ 296-QĐ/TW"}),
            _yn("S3", "Chi bộ có báo trước lịch và nội dung cho cấp ủy cấp trên", 0, "42-HD"),
            _yn("S4", "Có bằng chứng họp chi ủy trước và dự thảo nghị quyết", 0, "12-HD, tiêu chí 2"),
        ]),
        ("Diễn biến buổi sinh hoạt", [
            _yn("S5", "Khai mạc đúng giờ", 0, "12-HD, tiêu chí 3"),
            ("S6", "Số đảng viên có mặt thực tế", "count", 0, {"source": "12-HD, tiêu chí 1"}),
            _yn("S7", "Thực hiện đủ trình tự (mở đầu, nội dung, kết thúc)", 0, "09-HD"),
            ("S8", "Nội dung sát nhiệm vụ chính trị của đơn vị, có trọng tâm", "single_choice", 0, {"choices_json": SCALE_1_5, "source": "12-HD"}),
            ("S9", "Chất lượng điều hành của chủ trì", "single_choice", 0, {"choices_json": SCALE_1_5, "source": "Thực tiễn"}),
            ("S10", "Số đảng viên phát biểu", "count", 0, {"source": "Thực tiễn"}),
            _yn("S12", "Thực hiện nguyên tắc tập trung dân chủ, biểu quyết đúng (chỉ đảng viên chính thức)", 0, "12-HD, tiêu chí 4; Điều lệ Đảng"),
            _yn("S13", "Biên bản ghi đúng mẫu, đầy đủ; đọc lại và thông qua tại chỗ", 0, "Mẫu biên bản"),
            _yn("S14", "Sổ biên bản, sổ nghị quyết các kỳ trước ghi chép đầy đủ, đúng thể thức", 0, "QĐ 22-QĐ/TW", allow_na=True),
            _yn("S15", "Kết quả thực hiện nghị quyết kỳ trước được đánh giá tại buổi sinh hoạt", 0, "12-HD, tiêu chí 5"),
            _yn("S16", "Chi bộ thực hiện kế hoạch kiểm tra, giám sát đảng viên của năm", 0, "QĐ 22-QĐ/TW, Điều 7"),
        ]),
        ("Đánh giá và kiến nghị", [
            ("S17.cb", "Điểm chi bộ tự chấm (thang 100)", "count", 0, {"source": "Phú Thọ; mẫu Luật Minh Khuê"}),
            ("S17.gs", "Điểm cấp ủy viên cấp trên chấm (thang 100)", "count", 0, {"source": "Phú Thọ; mẫu Luật Minh Khuê"}),
            _yn("S17.xn", "Xác nhận kết quả chi bộ tự chấm", 0, "Phú Thọ"),
            ("S18", "Xếp loại buổi sinh hoạt", "single_choice", 0, {"choices_json": _choices(("Tốt", 0), ("Khá", 0), ("Trung bình", 0), ("Kém", 0)), "source": "Phú Thọ"}),
            ("S19", "Ưu điểm; hạn chế; kiến nghị và thời hạn khắc phục", "text", 0, {"source": "Thực tiễn"}),
            ("S20", "Ý kiến chỉ đạo tại buổi sinh hoạt (tóm tắt)", "text", 0, {"source": "Thực tiễn"}),
            ("S21", "Thời điểm ký xác nhận", "datetime", 0, {"source": "Suy luận"}),
        ]),
    ],
}

INSPECTION = {
    "code": "kiem-tra-nam", "kind": "kiem_tra", "name": "Kiểm tra chất lượng sinh hoạt chi bộ hằng năm",
    "description": "Cấp ủy cấp trên kiểm tra việc sinh hoạt của chi bộ trong năm (dùng khi đánh giá, xếp loại cuối năm).",
    "total": 0,
    "sections": [
        ("Chế độ sinh hoạt", [
            ("K1", "Số buổi sinh hoạt thường kỳ đã tổ chức trong năm", "count", 0, {"source": "Điều lệ Đảng, Điều 24", "min_value": 12}),
            _yn("K2", "Sinh hoạt chuyên đề ít nhất 01 lần mỗi quý", 0, "12-HD; 42-HD"),
            ("K3", "Số buổi sinh hoạt xếp loại Tốt trong năm", "count", 0, {"source": "Phú Thọ"}),
            _yn("K4", "100% buổi sinh hoạt xếp loại Khá trở lên", 0, "Phú Thọ"),
        ]),
        ("Hồ sơ, sổ sách", [
            _yn("K5", "Sổ biên bản sinh hoạt ghi chép đầy đủ, đúng thể thức", 0, "12-HD, tiêu chí 3"),
            _yn("K6", "Sổ nghị quyết; nghị quyết được theo dõi, đánh giá kết quả thực hiện", 0, "12-HD, tiêu chí 5"),
            _yn("K7", "Thu, nộp đảng phí đầy đủ, đúng hạn", 0, "09-HD"),
        ]),
        ("Kiểm tra, giám sát và đánh giá đảng viên", [
            _yn("K8", "Có kế hoạch kiểm tra, giám sát đảng viên của năm và thực hiện đúng kế hoạch", 0, "QĐ 22-QĐ/TW, Điều 7; QĐ 296-QĐ/TW"),
            _yn("K9", "Xử lý đảng viên vắng sinh hoạt nhiều tháng theo quy định", 0, "Điều lệ Đảng", allow_na=True),
            _yn("K10", "Tỷ lệ đảng viên Hoàn thành xuất sắc nhiệm vụ không vượt hạn mức của bộ quy tắc", 0, "366-QĐ/TW; HD 21-HD/BTCTW"),
            ("K11", "Nhận xét chung và kiến nghị", "text", 0, {"source": "Thực tiễn"}),
        ]),
    ],
}

SEED_TEMPLATES = [PREPARATION, REGULAR, THEMATIC, SUPERVISION, INSPECTION]


def seed_checklists() -> int:
    """Create and publish the seeded templates that are missing (fixed ids). Return how many were made."""
    made = 0
    for spec in SEED_TEMPLATES:
        template_id = seed_id(spec["code"])
        if ChecklistTemplate.get_or_none(ChecklistTemplate.id == template_id) or \
                ChecklistTemplate.get_or_none(ChecklistTemplate.code == spec["code"]):
            continue
        with db.atomic():
            template = ChecklistTemplate.create(id=template_id, code=spec["code"], name=spec["name"],
                                                kind=spec["kind"], description=spec["description"])
            version = TemplateVersion.create(id=seed_id(spec["code"], "v1"), template=template.id, number=1,
                                             status="draft", total_points=spec["total"])
            for s_pos, (title, items) in enumerate(spec["sections"], start=1):
                section = TemplateSection.create(id=seed_id(spec["code"], "v1", f"s{s_pos}"),
                                                 version=version.id, position=s_pos, title=title)
                for i_pos, (code, text, kind, points, extra) in enumerate(items, start=1):
                    TemplateItem.create(id=seed_id(spec["code"], "v1", code), version=version.id,
                                        section=section.id, position=i_pos, code=code, text=text,
                                        type=kind, points=points, **extra)
            publish(version)
        made += 1
    return made
