"""Hazard categories per domain, after the transport ministry's major-hazard judgement standards.

Each list names the kinds of situation its standard judges a major accident hazard
(重大事故隐患), shortened for a phone picklist; every list ends with 其他 (other). Sources:
道路运输企业和城市客运企业安全生产重大事故隐患判定标准（试行）(2023), 公路运营领域重大事故隐患
判定标准 (2023), 内河运输船舶重大事故隐患判定标准 (2024), 危险货物港口作业重大事故隐患判定标准
(2024), 公路水运工程生产安全重大事故隐患判定标准 (2025).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Enterprise, EnterpriseType, Grid

OTHER = "其他"

ROAD_TRANSPORT = "道路运输企业"
HIGHWAY_OPERATION = "公路运营"
INLAND_SHIPS = "内河船舶"
PORT_DANGEROUS_GOODS = "港口危险货物作业"
CONSTRUCTION = "公路水运工程施工"

CATEGORIES: dict[str, tuple[str, ...]] = {
    ROAD_TRANSPORT: (
        "无经营许可、超许可范围或有效期经营",
        "使用报废、擅自改装拼装或检验不合格的车辆设备",
        "驾驶员长期“三超一疲劳”未纠正处理",
        "驾驶员诚信考核严重扣分仍安排上岗",
        "恶劣天气预警下未执行停运指令仍安排运输",
        "长途客运未落实接驳运输或凌晨2时至5时违规运行",
        "客运站未落实“三不进站、六不出站”",
        "危险货物运输车辆、罐体或从业人员不符合规定",
        "动态监控装置缺失、失效或被人为屏蔽",
        OTHER,
    ),
    HIGHWAY_OPERATION: (
        "在役桥梁技术状况5类仍未封闭交通",
        "在役隧道技术状况5类仍未关闭",
        "邻近高铁、高速公路、危险品仓库等路段安全设施不达标",
        "跨水源保护区、高铁的桥梁及缆索承重桥梁防护不达标",
        "桥下、隧道内违法堆放易燃易爆危险物品",
        "养护作业区未按规定设置安全防护和交通管控",
        OTHER,
    ),
    INLAND_SHIPS: (
        "船长、轮机长不满足最低安全配员",
        "船员无有效适任证书或特殊培训合格证",
        "船舶无有效检验证书、符合证明或安全管理证书",
        "船舶超核定航区航行",
        "严重超载或超核定乘客定额载客",
        "违反禁限航要求冒险航行",
        "主机、舵机、车令或应急停车装置失效",
        "载运危险货物未申报或积载隔离不符合要求",
        "消防、救生设备缺失或失效",
        OTHER,
    ),
    PORT_DANGEROUS_GOODS: (
        "超许可范围、超能力或超期限作业",
        "危险货物存放、堆码、隔离不符合要求",
        "储罐、管道超温超压超液位或使用淘汰报废装卸机械",
        "作业工艺设备不满足货物危险特性或不能正常运行",
        "紧急切断、可燃有毒气体检测报警等安全设施缺失失效",
        "消防、应急设施配备不足或不能正常使用",
        "安全距离（间距）不符合规定",
        "重大危险源未辨识登记或未监测监控",
        "动火、受限空间、浮盘落底等高风险作业未按规定管理",
        OTHER,
    ),
    CONSTRUCTION: (
        "无资质、无安全生产许可证或关键人员无考核合格证",
        "危大工程专项施工方案未编制、审查或论证",
        "驻地、场站选址在滑坡、泥石流、洪水等危险区域",
        "高边坡未按设计支护、监测或有失稳征兆仍施工",
        "深基坑未按方案支护、降水或监测",
        "隧道安全步距超标或未开展超前地质预报、监控量测",
        "桥梁支架、挂篮、模板未经验算验收",
        "起重机械、架桥机未检验或安全装置失效",
        "水上作业船舶、平台不满足安全要求",
        "特种作业人员无证上岗",
        OTHER,
    ),
}

_BY_TYPE = {
    EnterpriseType.PASSENGER: ROAD_TRANSPORT,
    EnterpriseType.FREIGHT: ROAD_TRANSPORT,
    EnterpriseType.PORT: PORT_DANGEROUS_GOODS,
    EnterpriseType.SHIPPING: INLAND_SHIPS,
    EnterpriseType.FERRY: INLAND_SHIPS,
    EnterpriseType.CONSTRUCTION: CONSTRUCTION,
}

# Grid domains (free text in the roster) that point to a standard when the type does not.
_DOMAIN_WORDS = (
    (("公路养护", "公路运营", "公路管理", "高速"), HIGHWAY_OPERATION),
    (("在建", "工程", "施工", "建设"), CONSTRUCTION),
    (("港口", "码头"), PORT_DANGEROUS_GOODS),
    (("水运", "航运", "船舶", "渡口", "海事"), INLAND_SHIPS),
    (("客运", "货运", "道路运输", "运输"), ROAD_TRANSPORT),
)

ACCIDENT_TYPES: tuple[str, ...] = (
    "道路交通事故",
    "水上交通事故",
    "工程施工生产安全事故",
    "火灾、爆炸",
    "危险货物泄漏",
    "装卸、起重伤害",
    OTHER,
)


def standard_for(enterprise_type: str, grid_domain: str = "") -> str | None:
    """Which judgement standard applies to an enterprise (None: only 其他 applies)."""
    if enterprise_type in _BY_TYPE:
        return _BY_TYPE[EnterpriseType(enterprise_type)]
    for words, standard in _DOMAIN_WORDS:
        if any(w in grid_domain for w in words):
            return standard
    return None


def categories_for(enterprise_type: str, grid_domain: str = "") -> tuple[str, ...]:
    standard = standard_for(enterprise_type, grid_domain)
    return CATEGORIES[standard] if standard else (OTHER,)


async def categories_of(session: AsyncSession, enterprise_id: int) -> tuple[str, ...]:
    """The categories a hazard at this enterprise is picked from (by its type and grid)."""
    ent = await session.get(Enterprise, enterprise_id)
    assert ent is not None
    grid = await session.get(Grid, ent.grid_id)
    return categories_for(ent.type, grid.domain if grid else "")
