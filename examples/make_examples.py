"""Write the demo roster (萍乡市芦溪县) as YAML, CSV and XLSX from one structure.

The YAML goes into the package (bot/sandbox/data/, read by ``gridbot sandbox``), the CSV and
XLSX next to this script. Run from the repository root after editing the data below, and commit
the three outputs:

    .venv/bin/python examples/make_examples.py
"""

from __future__ import annotations

import csv
import io
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bot.roster.layout import COLUMNS, Scope  # noqa: E402
from bot.sandbox import DEMO_ROSTER  # noqa: E402

HERE = Path(__file__).resolve().parent
BASENAME = "demo-county"
YAML_OUT = Path(str(DEMO_ROSTER))  # the checkout's package data: a plain file

PROVINCE, CITY, COUNTY = "江西省", "萍乡市", "芦溪县"

# Everyone once: name -> (phone, Matrix id). Matrix ids live on the sandbox Synapse (localhost).
PEOPLE: dict[str, tuple[str | None, str | None]] = {
    # 芦溪县交通运输局
    "刘建国": ("13807991001", "@liujianguo:localhost"),  # 局长
    "王志强": ("13807991002", "@wangzhiqiang:localhost"),  # 分管安全副局长
    "陈晓燕": ("13807991003", "@chenxiaoyan:localhost"),  # 安全监督股
    "黄磊": ("13807991004", "@huanglei:localhost"),  # 安全监督股
    "钟丽萍": ("13807991011", "@zhongliping:localhost"),  # 运输股
    "李文斌": ("13807991012", "@liwenbin:localhost"),
    "彭海涛": ("13807991013", "@penghaitao:localhost"),
    "邓国华": ("13807991021", "@dengguohua:localhost"),  # 副局长
    "刘芳": ("13807991022", "@liufang:localhost"),
    "易小军": ("13807991023", "@yixiaojun:localhost"),
    "林志明": ("13807991024", "@linzhiming:localhost"),
    "胡卫东": ("13807991031", "@huweidong:localhost"),  # 副局长，兼管港航与渡口
    "曾建平": ("13807991032", "@zengjianping:localhost"),  # 港航管理
    "罗永红": ("13807991033", "@luoyonghong:localhost"),
    "谢春华": ("13807991034", "@xiechunhua:localhost"),
    "汤志勇": ("13807991035", "@tangzhiyong:localhost"),
    "李红梅": ("13807991041", "@lihongmei:localhost"),  # 副局长（工程）
    "张斌": ("13807991042", "@zhangbin:localhost"),  # 工程股
    "周建华": ("13807991043", "@zhoujianhua:localhost"),
    "吴伟": ("13807991044", "@wuwei:localhost"),
    # enterprises and projects
    "严国庆": ("13807992001", "@yanguoqing:localhost"),
    "张敏": ("13807992002", "@zhangmin:localhost"),
    "朱宏亮": ("13807992003", "@zhuhongliang:localhost"),
    "易凤英": ("13807992004", None),  # no Matrix account yet: phone only
    "袁志刚": ("13807992005", "@yuanzhigang:localhost"),
    "邱莉": (None, "@qiuli:localhost"),  # Matrix only
    "贺建军": ("13807992007", "@hejianjun:localhost"),
    "钟伟": ("13807992008", "@zhongwei:localhost"),
    "刘婷": ("13807992009", "@liuting:localhost"),
    "周宏伟": ("13807992011", "@zhouhongwei:localhost"),
    "吴丽华": ("13807992012", "@wulihua:localhost"),
    "赵德明": ("13807992013", "@zhaodeming:localhost"),
    "孙涛": ("13807992014", "@suntao:localhost"),
    "马俊": ("13807992015", None),
    "胡建华": ("13807992016", "@hujianhua:localhost"),
    "郭敏": ("13807992017", "@guomin:localhost"),
    "廖永福": ("13807992021", "@liaoyongfu:localhost"),
    "何小平": ("13807992022", "@hexiaoping:localhost"),
    "龙海波": ("13807992023", "@longhaibo:localhost"),
    "黎明": ("13807992024", "@liming:localhost"),
    "文建新": ("13807992025", "@wenjianxin:localhost"),
    "曹丽": ("13807992026", "@caoli:localhost"),
    "钟长根": ("13807992031", "@zhongchanggen:localhost"),
    "彭小兰": ("13807992032", "@pengxiaolan:localhost"),
    "简文华": ("13807992033", "@jianwenhua:localhost"),
    "简小东": ("13807992034", "@jianxiaodong:localhost"),
    "彭建国": ("13807992041", "@pengjianguo:localhost"),
    "刘洋": ("13807992042", "@liuyang:localhost"),
    "陈刚": ("13807992043", "@chengang:localhost"),
    "谭志华": ("13807992044", "@tanzhihua:localhost"),
    "范丽": ("13807992045", "@fanli:localhost"),
    "黄国强": ("13807992046", "@huangguoqiang:localhost"),
    "邹鹏": ("13807992047", "@zoupeng:localhost"),
}

# Level 1: 芦溪县交通运输局. The office director (deputy head for safety) also chiefs 道路客运.
LEVEL1 = {"chief": "刘建国", "director": "王志强", "office": ["陈晓燕", "黄磊"]}

# Level 2 grids and the enterprises they serve. "l2" = the level-2 members serving that row.
GRIDS: list[dict[str, Any]] = [
    {
        "domain": "道路客运",
        "chief": "王志强",
        "office": ["钟丽萍"],
        "enterprises": [
            ("芦溪汽车站", "客运", "严国庆", ["张敏"], ["李文斌"]),
            ("宣风汽车站", "客运", "朱宏亮", ["易凤英"], ["李文斌"]),
            ("芦溪县城乡公共交通有限公司", "客运", "袁志刚", ["邱莉"], ["彭海涛"]),
            ("萍乡市芦溪运输有限公司", "客运", "贺建军", ["钟伟", "刘婷"], ["彭海涛", "李文斌"]),
        ],
    },
    {
        "domain": "道路货运",
        "chief": "邓国华",
        "office": ["刘芳"],
        "enterprises": [
            ("芦溪县赣西物流有限公司", "货运", "周宏伟", ["吴丽华"], ["易小军"]),
            ("芦溪县顺达危险货物运输有限公司", "货运", "赵德明", ["孙涛", "马俊"], ["易小军"]),
            ("芦溪县宏源货运有限公司", "货运", "胡建华", ["郭敏"], ["林志明"]),
        ],
    },
    {
        "domain": "港口航运",
        "chief": "胡卫东",
        "office": ["曾建平"],
        "enterprises": [
            ("芦溪县袁河砂石码头", "港口", "廖永福", ["何小平"], ["罗永红"]),
            ("芦溪县宣风港埠有限公司", "港口", "龙海波", ["黎明"], ["罗永红"]),
            ("芦溪县武功山旅游船务有限公司", "航运", "文建新", ["曹丽"], ["谢春华"]),
        ],
    },
    {
        "domain": "渡口",
        "chief": "胡卫东",
        "office": ["曾建平"],
        "enterprises": [
            ("芦溪县山口岩水库渡口", "渡口", "钟长根", ["彭小兰"], ["汤志勇"]),
            ("芦溪县南坑镇高楼渡口", "渡口", "简文华", ["简小东"], ["谢春华"]),
        ],
    },
    {
        "domain": "交通工程",
        "chief": "李红梅",
        "office": ["张斌"],
        "enterprises": [
            ("国道G319线芦溪段改建工程", "工程", "彭建国", ["刘洋", "陈刚"], ["周建华"]),
            ("芦溪县武功山旅游公路提升改造工程", "工程", "谭志华", ["范丽"], ["周建华"]),
            ("芦溪县宣风至上埠公路改建工程", "工程", "黄国强", ["邹鹏"], ["吴伟"]),
        ],
    },
]

# Where the enterprises are (经度, 纬度: WGS-84 decimal degrees), for telling an on-site visit
# from one made elsewhere. Demo values near each town, not surveyed; the road projects stretch
# over kilometres and have none (the columns are optional).
COORDINATES: dict[str, tuple[float, float]] = {
    "芦溪汽车站": (114.0325, 27.6318),
    "宣风汽车站": (113.9355, 27.5660),
    "芦溪县城乡公共交通有限公司": (114.0251, 27.6282),
    "萍乡市芦溪运输有限公司": (114.0410, 27.6349),
    "芦溪县赣西物流有限公司": (114.0583, 27.6127),
    "芦溪县顺达危险货物运输有限公司": (114.0766, 27.6021),
    "芦溪县宏源货运有限公司": (113.9972, 27.6405),
    "芦溪县袁河砂石码头": (114.0702, 27.6190),
    "芦溪县宣风港埠有限公司": (113.9411, 27.5702),
    "芦溪县武功山旅游船务有限公司": (114.1596, 27.4689),
    "芦溪县山口岩水库渡口": (114.1197, 27.5288),
    "芦溪县南坑镇高楼渡口": (114.2105, 27.5011),
}


def cell(name: str) -> str:
    """A person cell entry: 姓名/电话/@账号:服务器."""
    phone, mxid = PEOPLE[name]
    return "/".join(p for p in (name, phone, mxid) if p)


def rows() -> list[dict[str, Any]]:
    """Rows with English keys; county- and domain-level people only on their first row."""
    out: list[dict[str, Any]] = []
    for g_index, grid in enumerate(GRIDS):
        for e_index, (name, etype, chief, members, l2) in enumerate(grid["enterprises"]):
            row: dict[str, Any] = {"county": COUNTY, "domain": grid["domain"]}
            if g_index == 0 and e_index == 0:
                row = {
                    "province": PROVINCE,
                    "city": CITY,
                    "county": COUNTY,
                    "unit_kind": "县",
                    "l1_chief": cell(LEVEL1["chief"]),
                    "l1_office_director": cell(LEVEL1["director"]),
                    "l1_office_members": [cell(p) for p in LEVEL1["office"]],
                    "domain": grid["domain"],
                }
            if e_index == 0:
                row["l2_chief"] = cell(grid["chief"])
                row["l2_office_members"] = [cell(p) for p in grid["office"]]
            row["l2_members"] = [cell(p) for p in l2]
            row["enterprise"] = name
            row["type"] = etype
            row["ent_chief"] = cell(chief)
            row["ent_members"] = [cell(p) for p in members]
            if name in COORDINATES:
                row["longitude"], row["latitude"] = COORDINATES[name]
            out.append(row)
    return out


def _flat(value: Any, sep: str) -> str:
    if isinstance(value, list):
        return sep.join(value)
    return "" if value is None else str(value)


def yaml_text() -> str:
    head = (
        "# 网格通 GridBot 网格名册示例：江西省萍乡市芦溪县\n"
        "# （与 examples/demo-county.csv / .xlsx 内容相同）\n"
        "# Demo roster, same content as examples/demo-county.csv / .xlsx.\n"
        "# Generated by examples/make_examples.py: edit the data there, not here.\n"
        "# 县级、业务领域级的人员只需在该县、该领域的第一行填写；后续行留空即可。\n"
    )
    return head + yaml.safe_dump({"rows": rows()}, allow_unicode=True, sort_keys=False, width=120)


def csv_text() -> str:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([c.header for c in COLUMNS])
    for row in rows():
        writer.writerow([_flat(row.get(c.key), "；") for c in COLUMNS])
    return buf.getvalue()


def write_xlsx(path: Path) -> None:
    from datetime import datetime

    import openpyxl
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.datavalidation import DataValidation

    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "网格名册"
    ws.append([c.header for c in COLUMNS])
    data = rows()
    for row in data:
        # Several people in one cell: one per line, as people type them in Excel (Alt+Enter).
        ws.append([_flat(row.get(c.key), "\n") for c in COLUMNS])
    head_fill = PatternFill("solid", fgColor="DDEBF7")
    for col_index, col in enumerate(COLUMNS, start=1):
        head = ws.cell(1, col_index)
        head.font = Font(bold=True, color="C00000" if col.required else "000000")
        head.fill = head_fill
        head.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
        width = 36 if col.people else 30 if col.key == "enterprise" else 12
        ws.column_dimensions[get_column_letter(col_index)].width = width
    for r in ws.iter_rows(min_row=2):
        for c in r:
            c.alignment = Alignment(vertical="center", wrap_text=True)
    _merge_shared_cells(ws, len(data))
    ws.freeze_panes = "A2"
    _validation(ws, DataValidation, "type", '"客运,货运,港口,航运,渡口,工程"', len(data))
    _validation(ws, DataValidation, "unit_kind", '"县,省直"', len(data))
    _help_sheet(wb)
    stamp = datetime(2025, 1, 1)
    wb.properties.created = wb.properties.modified = stamp
    buf = io.BytesIO()
    wb.save(buf)
    path.write_bytes(_stable_zip(buf.getvalue()))


def _merge_shared_cells(ws: Any, n_rows: int) -> None:
    """Merge county-level columns over all rows and domain-level ones over each domain's rows."""
    index = {c.key: i for i, c in enumerate(COLUMNS, start=1)}
    for col in COLUMNS:
        if col.scope is Scope.UNIT or col.key == "county":
            ws.merge_cells(
                start_row=2,
                end_row=n_rows + 1,
                start_column=index[col.key],
                end_column=index[col.key],
            )
    start = 2
    for grid in GRIDS:
        end = start + len(grid["enterprises"]) - 1
        for key in ("domain", "l2_chief", "l2_office_members"):
            if end > start:
                ws.merge_cells(
                    start_row=start, end_row=end, start_column=index[key], end_column=index[key]
                )
        start = end + 1


def _validation(ws: Any, cls: Any, key: str, formula: str, n_rows: int) -> None:
    col = next(i for i, c in enumerate(COLUMNS, start=1) if c.key == key)
    from openpyxl.utils import get_column_letter

    dv = cls(type="list", formula1=formula, allow_blank=True)
    letter = get_column_letter(col)
    dv.add(f"{letter}2:{letter}{max(n_rows + 1, 500)}")
    ws.add_data_validation(dv)


def _help_sheet(wb: Any) -> None:
    ws = wb.create_sheet("填写说明")
    ws.append(["列", "English", "说明"])
    notes = {
        "county": "必填。县（市、区），或省直单位名称（省综交中心、省交通执法局、厅治超办）",
        "unit_kind": "县 或 省直；留空为县（上述三个省直单位可自动识别）",
        "domain": "必填。二级网格的业务领域，如 道路客运、道路货运、港口航运、渡口、交通工程",
        "enterprise": "必填。同一县内不得重复",
        "type": "必填。客运、货运、港口、航运、渡口、工程",
        "ent_chief": "必填。企业主要负责人（三级网格长）",
        "longitude": "选填。企业位置的经度，十进制度数（WGS-84，手机 GPS 所用），如 114.0298；"
        "与纬度同时填写。走访时共享的位置与它比对，判断是否在现场",
        "latitude": "选填。企业位置的纬度，十进制度数，如 27.6306；与经度同时填写",
    }
    for col in COLUMNS:
        extra = "县级：同一县只需填第一行" if col.scope is Scope.UNIT else ""
        extra = "领域级：同一领域只需填第一行" if col.scope is Scope.GRID else extra
        ws.append([col.header, col.english, notes.get(col.key, extra)])
    ws.append([])
    ws.append(
        ["人员", "person", "姓名/电话/@账号:服务器，电话与账号至少填一项；多人用；或换行分隔"]
    )
    ws.column_dimensions["A"].width = 20
    ws.column_dimensions["B"].width = 24
    ws.column_dimensions["C"].width = 80


def _stable_zip(data: bytes) -> bytes:
    """Fix zip timestamps so regenerating an unchanged roster gives identical bytes."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=(2025, 1, 1, 0, 0, 0))
            fixed.compress_type = zipfile.ZIP_DEFLATED
            content = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                # openpyxl stamps the save time here whatever the workbook says.
                content = re.sub(
                    rb"(<dcterms:modified[^>]*>)[^<]*", rb"\g<1>2025-01-01T00:00:00Z", content
                )
            dst.writestr(fixed, content)
    return out.getvalue()


def main() -> None:
    YAML_OUT.write_text(yaml_text(), encoding="utf-8")
    (HERE / f"{BASENAME}.csv").write_text(csv_text(), encoding="utf-8-sig", newline="")
    write_xlsx(HERE / f"{BASENAME}.xlsx")
    print(f"wrote {YAML_OUT}, and {BASENAME}.csv, {BASENAME}.xlsx in {HERE}")


if __name__ == "__main__":
    main()
