"""Realistic demo data: the Party committee of the Tiền Giang market-management department.

Eight cells in the field teams, 10–25 members each with Vietnamese names, positions, a few
probationary and exempted members, and meeting history from January 2019 to today (monthly regular
meetings on the cell's fixed day, a thematic meeting every quarter) with attendance that improves
believably over the years, as the source article reports. Deterministic for a given seed.
"""
from __future__ import annotations

import datetime as dt
import random
import secrets
from dataclasses import dataclass

from .audit import audit_suppressed
from .base import db, local_today
from .meetings import Attendance, Meeting
from .members import Member, MemberStatusChange, Position
from .org import Cell, Organisation
from .rules import rule_set_for
from .seeds import seed_reference_data
from .users import User

ORG_NAME = "Đảng bộ Cục Quản lý thị trường tỉnh Tiền Giang"

CELLS = [
    ("CB01", "Chi bộ Văn phòng Cục", "co_quan"),
    ("CB02", "Chi bộ Đội Quản lý thị trường số 1 (TP. Mỹ Tho)", "co_quan"),
    ("CB03", "Chi bộ Đội Quản lý thị trường số 2 (Châu Thành)", "co_quan"),
    ("CB04", "Chi bộ Đội Quản lý thị trường số 3 (Cái Bè)", "co_quan"),
    ("CB05", "Chi bộ Đội Quản lý thị trường số 4 (Cai Lậy)", "co_quan"),
    ("CB06", "Chi bộ Đội Quản lý thị trường số 5 (Chợ Gạo)", "co_quan"),
    ("CB07", "Chi bộ Đội Quản lý thị trường số 6 (Gò Công)", "co_quan"),
    ("CB08", "Chi bộ Đội Quản lý thị trường số 7 (Tân Phước)", "co_quan"),
]

FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Huỳnh", "Hoàng", "Võ", "Phan", "Trương", "Bùi", "Đặng",
          "Đỗ", "Ngô", "Hồ", "Dương", "Lý", "Châu", "Lâm", "Tô", "Đoàn"]
MIDDLE_MEN = ["Văn", "Minh", "Thanh", "Hoàng", "Hữu", "Quốc", "Công", "Đức", "Tấn", "Thành", "Ngọc"]
MIDDLE_WOMEN = ["Thị", "Thị Ngọc", "Thị Kim", "Ngọc", "Thị Thanh", "Thị Mỹ", "Thị Bích", "Thùy"]
GIVEN_MEN = ["Hùng", "Dũng", "Tuấn", "Phong", "Khoa", "Long", "Nam", "Sơn", "Thắng", "Trí", "Phúc",
             "Tài", "Hiếu", "Nghĩa", "Lộc", "Cường", "Hải", "Bình", "Vũ", "Đạt", "Quang", "Toàn"]
GIVEN_WOMEN = ["Lan", "Hoa", "Phương", "Thảo", "Hương", "Trang", "Nhung", "Yến", "Loan", "Hạnh",
               "Ngân", "Diễm", "Thủy", "Tuyết", "Hồng", "Liên", "Vân", "Oanh", "Quyên", "Mai"]
REASONS = ["Đi công tác", "Ốm", "Việc gia đình", "Nghỉ phép", "Học tập", "Trực kiểm tra thị trường"]
THEMES = [
    "Học tập và làm theo tư tưởng, đạo đức, phong cách Hồ Chí Minh",
    "Nâng cao hiệu quả kiểm tra, kiểm soát thị trường trên địa bàn",
    "Phòng, chống buôn lậu, gian lận thương mại và hàng giả",
    "Xây dựng, chỉnh đốn Đảng theo Nghị quyết Trung ương 4",
    "Nâng cao tinh thần trách nhiệm, đạo đức công vụ của đảng viên",
    "Chuyển đổi số trong công tác quản lý thị trường",
]
# Share of counted members present, by year: the article reports steady improvement since 2019.
PRESENCE_BY_YEAR = {2019: 0.86, 2020: 0.88, 2021: 0.85, 2022: 0.91, 2023: 0.93, 2024: 0.94}
UNEXCUSED_BY_YEAR = {2019: 0.02, 2020: 0.015, 2021: 0.01}


@dataclass
class DemoAccount:
    """One demo login, printed once."""

    username: str
    password: str
    role: str
    description: str


def has_data() -> bool:
    """True when the database already holds an organisation (demo data is never mixed in)."""
    return Organisation.select().exists()


def load_demo(today: dt.date | None = None, seed: int = 2023, start_year: int = 2019) -> list[DemoAccount]:
    """Create the demo organisation, members, meetings and accounts; return the accounts made."""
    today = today or local_today()
    rng = random.Random(seed)
    accounts: list[DemoAccount] = []
    # A bulk load, not a person's edits: no audit rows (the trail starts with real use).
    with db.atomic(), audit_suppressed():
        seed_reference_data()
        org = Organisation.create(name=ORG_NAME, short_name="Đảng bộ Cục QLTT Tiền Giang")
        used_names: set[str] = set()
        for index, (code, name, cell_type) in enumerate(CELLS):
            cell = Cell.create(organisation=org.id, code=code, name=name, cell_type=cell_type,
                               meeting_day=[5, 6, 8, 10, 12, 15, 18, 20][index],
                               active_from=dt.date(2015, 1, 1))
            members = _make_members(rng, cell, today, used_names)
            _make_meetings(rng, cell, members, today, start_year)
            secretary = next(m for m in members if m.position == "bi_thu")
            accounts.append(_account(f"bithu.{code.lower()}", "secretary", secretary.full_name,
                                     f"Bí thư {name}", cell=cell, member=secretary))
            if index == 0:
                plain = next(m for m in members if m.position == "" and m.status == "full")
                accounts.append(_account(f"dangvien.{code.lower()}", "member", plain.full_name,
                                         f"Đảng viên {name}", cell=cell, member=plain))
        accounts.insert(0, _account("admin", "admin", "Văn phòng Đảng ủy", "Quản trị, Văn phòng Đảng ủy"))
        accounts.insert(1, _account("btv.hung", "supervisor", "Nguyễn Văn Hùng", "Ủy viên Ban Thường vụ"))
        for position, (username, name, code) in enumerate(STANDING_COMMITTEE, start=2):
            cell = Cell.get(Cell.code == code)
            accounts.insert(position, _account(username, "supervisor", name,
                                               f"Ủy viên Ban Thường vụ (sinh hoạt tại {code})", cell=cell))
        _supervision(today)
    return accounts


# The other Standing Committee members (btv.hung is the first) and the cells they belong to: the
# automatic rotation plan keeps them away from their own cells.
STANDING_COMMITTEE = [("btv.lan", "Trần Thị Lan", "CB01"), ("btv.minh", "Lê Quốc Minh", "CB03"),
                      ("btv.phuong", "Phạm Thị Phương", "CB05"), ("btv.son", "Võ Thanh Sơn", "CB07")]


def _supervision(today: dt.date) -> None:
    """The year's automatic rotation plan and two visits made, with recommendations followed up."""
    from .supervision import add_event, add_recommendation, generate_plan, planned_meeting, save_visit, start_visit

    lines, _left = generate_plan(today.year, 4)
    made = 0
    for line in sorted(lines, key=lambda x: x.month):
        meeting = planned_meeting(line)
        if made == 2 or meeting is None or meeting.held_on >= today:
            continue
        supervisor = User.get_by_id(line.supervisor_id)
        visit = start_visit(meeting, supervisor, today=today)
        save_visit(visit, {"verified_present": "", "score": "82" if made else "88",
                           "strengths": "Chuẩn bị nội dung chu đáo; điều hành đúng trình tự.",
                           "weaknesses": "Số đảng viên phát biểu còn ít; sổ nghị quyết ghi chưa đầy đủ.",
                           "remarks": "Đề nghị chi bộ phát huy dân chủ, gắn nội dung với nhiệm vụ chính trị."})
        rec = add_recommendation(visit, "Bổ sung, hoàn thiện sổ nghị quyết các kỳ trước",
                                 meeting.held_on + dt.timedelta(days=30), supervisor)
        add_recommendation(visit, "Phân công đảng viên chuẩn bị ý kiến phát biểu trước buổi sinh hoạt",
                           meeting.held_on + dt.timedelta(days=60), supervisor)
        if made == 0:
            secretary = User.get((User.cell == meeting.cell_id) & (User.role == "secretary"))
            add_event(rec, "done", "cell", secretary, "Đã bổ sung sổ nghị quyết")
            add_event(rec, "verified", "supervisor", supervisor)
        made += 1


def _account(username, role, full_name, description, cell=None, member=None) -> DemoAccount:
    password = secrets.token_urlsafe(9)
    user = User(username=username, role=role, full_name=full_name,
                cell=cell.id if cell else None, member=member.id if member else None)
    user.set_password(password, temporary=True)
    user.save()
    return DemoAccount(username, password, role, description)


def _vietnamese_name(rng: random.Random, used: set[str]) -> tuple[str, str]:
    while True:
        woman = rng.random() < 0.42
        name = " ".join([rng.choice(FAMILY), rng.choice(MIDDLE_WOMEN if woman else MIDDLE_MEN),
                         rng.choice(GIVEN_WOMEN if woman else GIVEN_MEN)])
        if name not in used:
            used.add(name)
            return name, "nu" if woman else "nam"


def _make_members(rng, cell, today, used_names) -> list[Member]:
    count = rng.randint(10, 25)
    members = []
    for i in range(count):
        name, gender = _vietnamese_name(rng, used_names)
        birth_year = rng.randint(1966, 1996)
        status, position, note = "full", "", ""
        admitted = dt.date(rng.randint(max(birth_year + 22, 1990), 2018), rng.randint(1, 12), rng.randint(1, 28))
        if i == 0:
            position = "bi_thu"
        elif i == 1:
            position = "pho_bi_thu"
        elif i in (2, 3) and count >= 9:
            position = "chi_uy_vien"
        elif i == count - 1 and count >= 14:
            status, birth_year = "exempted", rng.randint(1962, 1965)
            note = "Quyết định miễn sinh hoạt: tuổi cao, sức khỏe yếu"
        elif i == count - 2:
            # Probationary: admitted within the last year (one of them, in a big cell, already overdue).
            months_ago = 14 if count >= 20 else rng.randint(2, 10)
            admitted = _months_before(today, months_ago)
            status = "probationary"
        elif i == count - 3 and count >= 18:
            status, note = "temp_here", "Sinh hoạt tạm thời, đang biệt phái từ Cục"
        full_on = None if status == "probationary" else _add_months(admitted, 12)
        card = None if status == "probationary" else f"{rng.randint(10, 99)}.{rng.randint(100000, 999999)}"
        member = Member.create(
            cell=cell.id, full_name=name, birth_year=birth_year, gender=gender, admitted_on=admitted,
            full_member_on=full_on, card_number=card, status=status, status_note=note, position=position,
        )
        # Status and positions as dated records, as the profile shows them.
        since = full_on if status == "full" else admitted
        MemberStatusChange.create(member=member.id, status=status, effective_on=since or admitted,
                                  decision="QĐ miễn sinh hoạt của chi bộ" if status == "exempted" else "",
                                  reason=note)
        if position:
            Position.create(member=member.id, kind=position, start_on=dt.date(2020, 9, 15),
                            note="Nhiệm kỳ 2020–2025")
        members.append(member)
    return members


def _make_meetings(rng, cell, members, today, start_year) -> None:
    month = dt.date(start_year, 1, 1)
    while month <= today:
        day = min(cell.meeting_day + (rng.choice([0, 0, 0, 0, 1, 2]) if month.year < 2022 else 0), 28)
        held_on = month.replace(day=day)
        _meeting(rng, cell, members, held_on, "regular", today)
        if month.month in (2, 5, 8, 11):
            thematic_day = min(day + 10, 28)
            _meeting(rng, cell, members, month.replace(day=thematic_day), "thematic", today,
                     title=f"Sinh hoạt chuyên đề: {rng.choice(THEMES)}")
        month = _add_months(month, 1)
    # The next regular meeting is planned already, so a secretary can open it and take the roll.
    upcoming = today.replace(day=min(cell.meeting_day, 28))
    if upcoming < today:
        upcoming = _add_months(upcoming, 1).replace(day=min(cell.meeting_day, 28))
        _meeting(rng, cell, members, upcoming, "regular", today)


def _meeting(rng, cell, members, held_on, kind, today, title="") -> None:
    past = held_on < today
    if Meeting.select().where((Meeting.cell == cell.id) & (Meeting.held_on == held_on)).exists():
        return
    rules = rule_set_for(held_on)
    start = dt.time(14, 0) if kind == "regular" else dt.time(8, 0)
    minutes = rng.choice([90, 95, 100, 105, 110, 120]) if held_on.year >= 2020 else rng.choice([75, 85, 90, 95, 100])
    end = (dt.datetime.combine(held_on, start) + dt.timedelta(minutes=minutes)).time()
    meeting = Meeting.create(cell=cell.id, kind=kind, held_on=held_on, starts_at=start,
                             ends_at=end if past else None, title=title,
                             # Signed (closed) only once its roll call is in: a closed meeting is locked.
                             status="ended" if past else "planned",
                             rule_set=rules.id if rules else None)
    if not past:
        return
    present_p = PRESENCE_BY_YEAR.get(held_on.year, 0.95)
    unexcused_p = UNEXCUSED_BY_YEAR.get(held_on.year, 0.003)
    for member in members:
        if not member.counts_for_attendance or (member.admitted_on and member.admitted_on > held_on):
            continue
        roll = rng.random()
        if roll < present_p:
            status, reason = "present", ""
        elif roll < present_p + unexcused_p:
            status, reason = "unexcused", ""
        else:
            status, reason = "excused", rng.choice(REASONS)
        Attendance.create(meeting=meeting.id, member=member.id, status=status, reason=reason)
    meeting.status = "closed"
    meeting.save()


def _add_months(day: dt.date, months: int) -> dt.date:
    index = day.month - 1 + months
    return dt.date(day.year + index // 12, index % 12 + 1, min(day.day, 28))


def _months_before(day: dt.date, months: int) -> dt.date:
    return _add_months(day, -months)
