#!/usr/bin/env python3
"""Helpers for the network-namespace lab (scripts/lab.sh). Standard library only.

  ping TARGET INTERVAL_S OUT      ICMP echo every INTERVAL_S (raw socket: root); appends
                                  "<wall ms> <seq>" per reply to OUT. Runs until killed.
  vippoll VIP INTERVAL_S OUT NS...  every INTERVAL_S, dumps the IPv4 addresses of every
                                  namespace NS (one rtnetlink socket per namespace, all dumps
                                  back to back, well under 1 ms) and appends
                                  "<wall ms> <holder,holder,...>" to OUT when the set of
                                  holders changes. Two holders in one sample are re-checked
                                  (the earlier-read host is read again after the later one) and,
                                  if confirmed, a line "<ms> DOUBLE a,b" is written.
  arpwatch VIP MY_IP IFACE INTERVAL_S WINDOW_S OUT
                                  every INTERVAL_S, broadcasts an ARP request "who-has VIP tell
                                  MY_IP" on IFACE (AF_PACKET: root) and collects the replies
                                  (op 2, sender VIP, target MY_IP) for WINDOW_S. Appends
                                  "<wall ms> <mac,mac|->" to OUT when the set of answering MACs
                                  changes, and "<ms> DOUBLE <mac>@<us>,<mac>@<us>" (reply delays
                                  after the send) when one request got replies from two MACs.
  overlaps VIP HOST=MONLOG...     reads `ip -ts monitor address` logs (one per host, taken at
                                  real-time priority) and turns every add and delete of VIP into
                                  exact holding intervals per host (the kernel's own events: no
                                  sampling, so a 1 ms overlap cannot slip between two samples).
                                  Prints "OVERLAP a,b <from> <to> <us>" for every instant two
                                  hosts held it (wall time, us of overlap) and exits 1 if any;
                                  else "OK <intervals>".
  handover VIP KVLOG FROM_MS OLD NEW HOST=MONLOG...
                                  a planned handover that started at FROM_MS (wall ms): finds the
                                  vacant record OLD wrote (holder "", its epoch kept) in KVLOG (a
                                  hacoord_test_kvwatch log: server stamps) and NEW's winning write
                                  after it; checks OLD's VIP delete came before the vacant record and
                                  NEW's VIP add after its winning write. Prints the margins ("VIP off
                                  1.20 ms before vacant ...; VIP on 0.80 ms after win ...") or what was
                                  wrong (exit 1).
  order VIP KVLOG HOST=MONLOG...
                                  every VIP add of every host: the latest lease record written before
                                  it must name that host holder; every takeover of a lease not handed
                                  over must be stamped at least the replaced record's leaseMs after
                                  it. Prints "OK ..." (adds next to a revision gap in KVLOG are
                                  counted unverified), or ADD-BEFORE-WRITE / EARLY-TAKEOVER lines
                                  and exits 1.
  takeover KVLOG FROM_MS NEW      how long after the replaced record NEW's first takeover (at/after
                                  FROM_MS) was stamped, for the report.
  stable VIP KVLOG FROM_MS LEADER HOST=MONLOG...
                                  nothing moved since FROM_MS: only renewals of LEADER's epoch in
                                  KVLOG, LEADER holds the VIP throughout, nobody else held it.
  edge VIP off|on FROM_MS MONLOG  wall time (us) the VIP went off (the interval covering FROM_MS, or
                                  the next, ended) or on (first add at/after FROM_MS) on that host.
  selftest                        the checks above on synthetic logs.
  gap REPLIES FROM_MS TO_MS       the longest gap (ms) between consecutive replies that spans
                                  any instant of [FROM_MS, TO_MS]; counts the window edges as
                                  replies are missing there. Prints "<gap_ms> <replies_in_window>".
"""
import calendar
import ctypes
import datetime
import json
import os
import select
import socket
import struct
import sys
import time


def now_ms():
    return time.time_ns() // 1_000_000


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return (~s) & 0xFFFF


def cmd_ping(target, interval, out):
    interval = float(interval)
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    seq = 0
    f = open(out, "a", buffering=1)
    next_send = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= next_send:
            seq = (seq + 1) & 0xFFFF
            payload = struct.pack("!d", time.time())
            hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
            csum = checksum(hdr + payload)
            pkt = struct.pack("!BBHHH", 8, 0, csum, ident, seq) + payload
            try:
                sock.sendto(pkt, (target, 0))
            except OSError:
                pass  # e.g. no route / neighbour failure: counts as a lost reply
            next_send += interval
            if next_send < now:
                next_send = now + interval
        timeout = max(0.0, next_send - time.monotonic())
        r, _, _ = select.select([sock], [], [], timeout)
        if not r:
            continue
        data, addr = sock.recvfrom(2048)
        ihl = (data[0] & 0x0F) * 4
        icmp = data[ihl:]
        if len(icmp) < 8:
            continue
        typ, _code, _c, rid, rseq = struct.unpack("!BBHHH", icmp[:8])
        if typ == 0 and rid == ident and addr[0] == target:
            f.write("%d %d\n" % (now_ms(), rseq))


# --- rtnetlink address dump -------------------------------------------------------------------
CLONE_NEWNET = 0x40000000
RTM_GETADDR = 22
RTM_NEWADDR = 20
NLM_F_REQUEST = 1
NLM_F_DUMP = 0x300
NLMSG_DONE = 3
NLMSG_ERROR = 2
IFA_ADDRESS = 1
IFA_LOCAL = 2


def netns_socket(name):
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    fd = os.open("/run/netns/" + name, os.O_RDONLY)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns " + name)
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    s.bind((0, 0))
    if libc.setns(own, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns back")
    os.close(fd)
    os.close(own)
    return s


_seq = [0]


def has_addr(sock, vip_bytes):
    _seq[0] += 1
    seq = _seq[0]
    msg = struct.pack("=IHHII", 16 + 8, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
    msg += struct.pack("=BBBBI", socket.AF_INET, 0, 0, 0, 0)
    sock.send(msg)
    found = False
    while True:
        data = sock.recv(65536)
        off = 0
        while off + 16 <= len(data):
            length, typ, _flags, mseq, _pid = struct.unpack_from("=IHHII", data, off)
            if length < 16:
                return found
            if mseq == seq:
                if typ == NLMSG_DONE or typ == NLMSG_ERROR:
                    return found
                if typ == RTM_NEWADDR:
                    a = off + 16 + 8
                    end = off + length
                    while a + 4 <= end:
                        alen, atyp = struct.unpack_from("=HH", data, a)
                        if alen < 4:
                            break
                        if atyp in (IFA_LOCAL, IFA_ADDRESS) and data[a + 4:a + alen] == vip_bytes:
                            found = True
                        a += (alen + 3) & ~3
            off += (length + 3) & ~3


def cmd_vippoll(vip, interval, out, *names):
    interval = float(interval)
    vip_bytes = socket.inet_aton(vip)
    # Log short names: "hacoord-lab-123-h2" -> "h2".
    socks = [(n.rsplit("-", 1)[-1], netns_socket(n)) for n in names]
    f = open(out, "a", buffering=1)
    last = None
    while True:
        t = now_ms()
        holders = [n for n, s in socks if has_addr(s, vip_bytes)]
        if len(holders) >= 2:
            # Re-read the hosts read before the last holder: still there => held at the same time.
            first = [n for n, s in socks if n in holders[:-1] and has_addr(s, vip_bytes)]
            if first:
                f.write("%d DOUBLE %s\n" % (t, ",".join(first + holders[-1:])))
        key = ",".join(holders)
        if key != last:
            f.write("%d %s\n" % (t, key if key else "-"))
            last = key
        time.sleep(interval)


ETH_P_ARP = 0x0806


def cmd_arpwatch(vip, my_ip, iface, interval, window, out):
    interval, window = float(interval), float(window)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    sock.bind((iface, ETH_P_ARP))
    with open("/sys/class/net/%s/address" % iface) as fh:
        my_mac = bytes.fromhex(fh.read().strip().replace(":", ""))
    vip_b, me_b = socket.inet_aton(vip), socket.inet_aton(my_ip)
    req = (b"\xff" * 6 + my_mac + struct.pack("!H", ETH_P_ARP)
           + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + my_mac + me_b + b"\0" * 6 + vip_b)
    fmt = lambda m: ":".join("%02x" % b for b in m)
    f = open(out, "a", buffering=1)
    last = None
    next_send = time.monotonic()
    while True:
        delay = next_send - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        # Drop late replies to the previous request, then send and collect for WINDOW_S.
        while select.select([sock], [], [], 0)[0]:
            sock.recv(2048)
        next_send += interval
        if next_send < time.monotonic():
            next_send = time.monotonic() + interval
        t = now_ms()
        sent = time.monotonic()
        try:
            sock.send(req)
        except OSError:
            continue
        macs = {}
        end = sent + window
        while True:
            left = end - time.monotonic()
            if left <= 0 or not select.select([sock], [], [], left)[0]:
                break
            data = sock.recv(2048)
            if len(data) < 42 or data[12:14] != b"\x08\x06":
                continue
            op = struct.unpack("!H", data[20:22])[0]
            sha, spa, tpa = data[22:28], data[28:32], data[38:42]
            if op == 2 and spa == vip_b and tpa == me_b and sha not in macs:
                macs[sha] = int((time.monotonic() - sent) * 1e6)
        if len(macs) >= 2:
            f.write("%d DOUBLE %s\n" % (t, ",".join("%s@%d" % (fmt(m), us) for m, us in macs.items())))
        key = ",".join(sorted(fmt(m) for m in macs)) or "-"
        if key != last:
            f.write("%d %s\n" % (t, key))
            last = key


def cmd_gap(path, frm, to):
    frm, to = int(frm), int(to)
    times = []
    with open(path) as fh:
        for line in fh:
            p = line.split()
            if p:
                times.append(int(p[0]))
    times.sort()
    before = [t for t in times if t <= frm]
    inside = [t for t in times if frm < t < to]
    after = [t for t in times if t >= to]
    seq = ([before[-1]] if before else [frm]) + inside + ([after[0]] if after else [to])
    gap = max((b - a for a, b in zip(seq, seq[1:])), default=to - frm)
    print(gap, len(inside))


def monitor_stamp_ns(stamp):
    """ns since the Unix epoch of an `ip -ts` stamp ("2026-12-03T10:11:12.123456").

    iproute2 prints gettimeofday() at the moment it handles the event, as strftime("%Y-%m-%dT%H:%M:%S",
    localtime()) plus ".%06ld" microseconds: local time with no zone. lab_start_addrmon runs `ip`
    with TZ=UTC, so the stamp is UTC (no zone or daylight-saving guess) and exact to 1 us."""
    dt = datetime.datetime.fromisoformat(stamp)
    return (calendar.timegm(dt.timetuple()) * 1_000_000 + dt.microsecond) * 1000


def parse_monitor(path, vip):
    """Holding intervals [(from_ns, to_ns | None)] of `vip` in one `ip -ts monitor address` log."""
    intervals, since = [], None
    needle = " inet %s/" % vip
    with open(path) as fh:
        for line in fh:
            if not line.startswith("[") or needle not in line:
                continue
            stamp, rest = line[1:].split("]", 1)
            t = monitor_stamp_ns(stamp)
            if rest.lstrip().startswith("Deleted"):
                if since is not None:
                    intervals.append((since, t))
                since = None
            elif since is None:  # an add (a lifetime change of a held address repeats it)
                since = t
    if since is not None:
        intervals.append((since, None))
    return intervals


def host_intervals(vip, host_logs):
    held = {}
    for item in host_logs:
        host, path = item.split("=", 1)
        held[host] = parse_monitor(path, vip)
    return held


def find_overlaps(held):
    """[(a, b, from_ns, to_ns | None)] for every instant two hosts held the VIP."""
    out = []
    hosts = sorted(held)
    for i, a in enumerate(hosts):
        for b in hosts[i + 1:]:
            for (a0, a1) in held[a]:
                for (b0, b1) in held[b]:
                    ends = [e for e in (a1, b1) if e is not None]
                    lo, hi = max(a0, b0), (min(ends) if ends else None)
                    if hi is None or lo < hi:
                        out.append((a, b, lo, hi))
    return out


def cmd_overlaps(vip, *host_logs):
    bad = find_overlaps(host_intervals(vip, host_logs))
    for a, b, lo, hi in bad:
        print("OVERLAP %s,%s %.6f %s %d" % (a, b, lo / 1e9, "open" if hi is None else "%.6f" % (hi / 1e9),
                                             -1 if hi is None else (hi - lo) // 1000))
    if bad:
        sys.exit(1)
    held = host_intervals(vip, host_logs)
    print("OK %d" % sum(len(v) for v in held.values()))


# --- lease records (hacoord_test_kvwatch) against the address events ----------------------------
class Rec:
    """One revision of the lease key: server stamp (ns), revision, op, and of a lease record
    holder, epoch, incarnation and leaseMs (None when the value is not one)."""

    def __init__(self, created, rev, op, holder, epoch, incarnation=None, lease_ms=None):
        self.created, self.rev, self.op, self.holder, self.epoch = created, rev, op, holder, epoch
        self.incarnation, self.lease_ms = incarnation, lease_ms

    def __repr__(self):
        return "rev %d %s holder=%r epoch=%s" % (self.rev, self.op, self.holder, self.epoch)


def parse_kvlog(path):
    """Records of a `hacoord_test_kvwatch` log ("<created_ns> <rev> <op> <src> <value>"), by
    server stamp. A value that is not a lease record leaves holder and epoch None."""
    recs = []
    with open(path) as fh:
        for line in fh:
            if line.startswith("#") or not line.strip():
                continue
            p = line.rstrip("\n").split(" ", 4)
            if len(p) < 5:
                continue  # a line cut by the kill at the end
            holder = epoch = incarnation = lease_ms = None
            if p[2] == "PUT":
                try:
                    v = json.loads(p[4])
                    holder, epoch = v.get("holder"), v.get("epoch")
                    incarnation, lease_ms = v.get("incarnation"), v.get("leaseMs")
                except (ValueError, AttributeError):
                    pass
            recs.append(Rec(int(p[0]), int(p[1]), p[2], holder, epoch, incarnation, lease_ms))
    recs.sort(key=lambda r: (r.created, r.rev))
    return recs


def ms(ns):
    return ns / 1e6


def check_handover(recs, held, from_ns, old, new):
    """Planned handover starting at from_ns (DESIGN §3 "Planned handover", §4 "Order"): OLD
    removes the VIP, then writes the vacant record (holder "", its epoch kept); NEW adds the VIP
    only after its winning write. Returns (ok, text): margins, or what was wrong."""
    vacant = None
    for i, r in enumerate(recs):
        if r.created < from_ns or r.op != "PUT" or r.holder != "":
            continue
        before = [q for q in recs[:i] if q.op == "PUT" and q.holder]
        if before and before[-1].holder == old and before[-1].epoch == r.epoch:
            vacant = r
            break
    if vacant is None:
        return False, "no vacant record written by %s (holder \"\", its epoch kept) after the start" % old
    starts = [iv for iv in held.get(old, []) if iv[0] <= from_ns and (iv[1] is None or iv[1] > from_ns)]
    if not starts:
        return False, "%s did not hold the VIP at the start per its address events" % old
    off = starts[0][1]
    if off is None:
        return False, "%s never removed the VIP; vacant record %r" % (old, vacant)
    if not off < vacant.created:
        return False, ("%s removed the VIP %.3f ms AFTER its vacant record (%r): the VIP must go first"
                       % (old, ms(off - vacant.created), vacant))
    win = next((r for r in recs if r.created > vacant.created and r.op == "PUT" and r.holder == new), None)
    if win is None:
        return False, "no record naming %s holder after the vacant %r" % (new, vacant)
    if win.epoch is None or vacant.epoch is None or not win.epoch > vacant.epoch:
        return False, "%s's record %r does not raise the epoch of the vacant %r" % (new, win, vacant)
    adds = [iv[0] for iv in held.get(new, []) if iv[0] >= from_ns]
    if any(iv[0] < from_ns and (iv[1] is None or iv[1] > from_ns) for iv in held.get(new, [])):
        return False, "%s already held the VIP at the start" % new
    if not adds:
        return False, "%s never added the VIP" % new
    on = adds[0]
    if not on > win.created:
        return False, ("%s added the VIP %.3f ms BEFORE its winning write (%r): the lease must come first"
                       % (new, ms(win.created - on), win))
    return True, ("VIP off %.2f ms before vacant (rev %d, epoch %s); VIP on %.2f ms after win (rev %d, epoch %s)"
                  % (ms(vacant.created - off), vacant.rev, vacant.epoch, ms(on - win.created), win.rev, win.epoch))


def check_adds(recs, held):
    """Every VIP add of every host against the lease records (DESIGN §4 "on winning, lease first,
    VIP after"): the latest record written before the add must name that host holder. Returns
    (violations, unverified, checked) as text lines / a count. An add is unverified, not failed,
    when the records around it are not contiguous (the watcher missed revisions: a server restart)
    so a missed record could have named the host."""
    bad, unverified, checked = [], [], 0
    for host in sorted(held):
        for start, _end in held[host]:
            checked += 1
            before = [r for r in recs if r.created < start]
            after = [r for r in recs if r.created >= start]
            prev = before[-1] if before else None
            nxt = after[0] if after else None
            if prev is not None and prev.op == "PUT" and prev.holder == host:
                continue
            if prev is None:
                complete = nxt is None or nxt.rev == 1
            else:
                # Revision 1 after others: the bucket was lost and nxt opens the new generation.
                complete = nxt is None or nxt.rev == prev.rev + 1 or nxt.rev == 1
            what = "%s added the VIP at %.6f; latest record before it: %s%s" % (
                host, start / 1e9, "none" if prev is None else "%r, %.3f ms earlier" % (prev, ms(start - prev.created)),
                "" if nxt is None else "; next: %r, %.3f ms later" % (nxt, ms(nxt.created - start)))
            (bad if complete else unverified).append(what)
    return bad, unverified, checked


def check_stable(recs, held, from_ns, leader):
    """Nothing moved since from_ns: every lease record from then on is a renewal by LEADER of the
    epoch it held at from_ns, LEADER holds the VIP since before from_ns without a break, and no other
    host held it at any instant after from_ns. Returns (ok, text)."""
    before = [r for r in recs if r.created <= from_ns]
    if not before or before[-1].op != "PUT" or before[-1].holder != leader:
        return False, "the lease record at the start is %r, not held by %s" % (before[-1] if before else None,
                                                                                 leader)
    epoch = before[-1].epoch
    for r in recs:
        if r.created > from_ns and (r.op != "PUT" or r.holder != leader or r.epoch != epoch):
            return False, "lease record %r written %.1f ms after the start (%s held epoch %s)" % (
                r, ms(r.created - from_ns), leader, epoch)
    mine = [iv for iv in held.get(leader, []) if iv[0] <= from_ns and (iv[1] is None or iv[1] > from_ns)]
    if not mine:
        return False, "%s did not hold the VIP at the start per its address events" % leader
    if mine[0][1] is not None:
        return False, "%s removed the VIP %.1f ms after the start" % (leader, ms(mine[0][1] - from_ns))
    for host in sorted(held):
        if host == leader:
            continue
        for start, end in held[host]:
            if end is None or end > from_ns:
                return False, "%s held the VIP at %.6f, after the start" % (host, max(start, from_ns) / 1e9)
    return True, "stable: %s holds epoch %s and the VIP, %d renewals since" % (
        leader, epoch, len([r for r in recs if r.created > from_ns]))


def cmd_stable(vip, kvlog, from_ms, leader, *host_logs):
    ok, text = check_stable(parse_kvlog(kvlog), host_intervals(vip, host_logs), int(from_ms) * 1_000_000,
                            leader)
    print(text)
    sys.exit(0 if ok else 1)


def cmd_edge(vip, kind, from_ms, monlog):
    """`off`: when the holding interval that covers FROM_MS (or the first one after it) ended;
    `on`: when the first interval starting at/after FROM_MS began. Wall time in us; nothing if none."""
    from_ns = int(from_ms) * 1_000_000
    ivs = parse_monitor(monlog, vip)
    if kind == "off":
        ends = [e for s0, e in ivs if e is not None and e >= from_ns]
        if ends:
            print(min(ends) // 1000)
    else:
        starts = [s0 for s0, _e in ivs if s0 >= from_ns]
        if starts:
            print(min(starts) // 1000)


def takeovers(recs):
    """Every acquire of a lease that was not handed over (DESIGN §3 "Follower takeover": after the
    record's leaseMs with no new revision, CAS-update against that revision): consecutive revisions
    (prev, cur) where cur raises the epoch with a holder and prev is not a vacant record, nor the same
    process's own record (holder and incarnation). Returns [(prev, cur, waited_ns, lease_ns)]; the
    rule is waited_ns >= lease_ns (the winner's timer started when it saw prev, after prev's stamp).
    A delete marker or an unreadable record counts as "holder unknown" with the winner's leaseMs.
    A lost bucket (revision 1 again: a new generation) is "holder unknown" too, whatever the last
    record of the old one said: its first record must come a lease after that one (a vacant or own
    record is no exception). Other pairs across a revision gap (the watcher missed some) are skipped."""
    out = []
    for prev, cur in zip(recs, recs[1:]):
        if cur.op != "PUT" or not cur.holder or cur.epoch is None:
            continue
        if cur.rev == 1 and prev.rev >= 1:  # sorted by stamp: the bucket was lost in between
            lease = prev.lease_ms if prev.op == "PUT" and prev.lease_ms else cur.lease_ms
            out.append((prev, cur, cur.created - prev.created, (lease or 0) * 1_000_000))
            continue
        if cur.rev != prev.rev + 1:
            continue
        if prev.op == "PUT" and prev.epoch is not None and not cur.epoch > prev.epoch:
            continue  # a renewal, or a release
        if prev.op == "PUT" and prev.holder == "":
            continue  # handed over: anyone may take it at once
        if prev.op == "PUT" and prev.holder == cur.holder and prev.incarnation == cur.incarnation:
            continue  # the holder's own lease
        lease = prev.lease_ms if prev.op == "PUT" and prev.lease_ms else cur.lease_ms
        out.append((prev, cur, cur.created - prev.created, (lease or 0) * 1_000_000))
    return out


def cmd_takeover(kvlog, from_ms, new):
    """The first takeover by NEW stamped at/after FROM_MS: "<waited> ms after <prev> (lease <L>)"."""
    from_ns = int(from_ms) * 1_000_000
    for prev, cur, waited, lease in takeovers(parse_kvlog(kvlog)):
        if cur.created >= from_ns and cur.holder == new:
            print("%s won epoch %s %.1f ms after %s's last record (lease %d ms)" % (
                new, cur.epoch, ms(waited), prev.holder or "?", lease // 1_000_000))
            return
    print("no takeover by %s found" % new)


def cmd_handover(vip, kvlog, from_ms, old, new, *host_logs):
    ok, text = check_handover(parse_kvlog(kvlog), host_intervals(vip, host_logs), int(from_ms) * 1_000_000,
                              old, new)
    print(text)
    sys.exit(0 if ok else 1)


def cmd_order(vip, kvlog, *host_logs):
    recs = parse_kvlog(kvlog)
    bad, unverified, checked = check_adds(recs, host_intervals(vip, host_logs))
    for line in bad:
        print("ADD-BEFORE-WRITE " + line)
    for line in unverified:
        print("UNVERIFIED " + line)
    taken = takeovers(recs)
    early = [t for t in taken if not t[2] >= t[3]]
    for prev, cur, waited, lease in early:
        print("EARLY-TAKEOVER %r stamped %.3f ms after %r (leaseMs %d)" % (cur, ms(waited), prev,
                                                                          lease // 1_000_000))
    if bad or early:
        sys.exit(1)
    print("OK %d adds checked (%d unverified), %d takeovers waited the lease" % (checked, len(unverified),
                                                                             len(taken)))


def cmd_selftest():
    """Synthetic logs through the parsers and checks (no root, no network)."""
    import tempfile
    d = tempfile.mkdtemp(prefix="lab_tools_selftest.")

    def stamp(ns):
        dt = datetime.datetime.fromtimestamp(ns // 1_000_000_000, datetime.timezone.utc)
        return "%s.%06d" % (dt.strftime("%Y-%m-%dT%H:%M:%S"), ns % 1_000_000_000 // 1000)

    def mon(name, events):
        path = os.path.join(d, name)
        with open(path, "w") as fh:
            for ns, kind in events:
                pre = "Deleted " if kind == "del" else ""
                fh.write("[%s] %s2: eth0    inet 192.0.2.100/32 scope global eth0\n" % (stamp(ns), pre))
                fh.write("       valid_lft 1sec preferred_lft 1sec\n")
        return path

    def kv(name, recs):
        path = os.path.join(d, name)
        with open(path, "w") as fh:
            fh.write("# 1 connected\n")
            for ns, rev, holder, epoch in recs:
                fh.write('%d %d PUT w {"epoch":%d,"holder":"%s","incarnation":"x","leaseMs":2000,'
                         '"successor":""}\n' % (ns, rev, epoch, holder))
        return path

    base = 1_800_000_000_000_000_000
    us = 1000
    assert monitor_stamp_ns(stamp(base + 123456 * us)) == base + 123456 * us
    # h1 holds from 10 ms after its win (rev 1), drops it at 1000.0 ms, vacant at 1000.4 ms, h2 wins at
    # 1001.0 ms and adds at 1001.7 ms; h1 renews once at 500 ms (a lifetime change repeats the add).
    h1 = mon("h1", [(base + 10_000 * us, "add"), (base + 500_000 * us, "add"), (base + 1_000_000 * us, "del")])
    h2 = mon("h2", [(base + 1_001_700 * us, "add")])
    log = kv("kv", [(base + 1_000 * us, 1, "h1", 1), (base + 499_000 * us, 2, "h1", 1),
                    (base + 1_000_400 * us, 3, "", 1), (base + 1_001_000 * us, 4, "h2", 2)])
    held = host_intervals("192.0.2.100", ["h1=" + h1, "h2=" + h2])
    assert held["h1"] == [(base + 10_000 * us, base + 1_000_000 * us)], held
    assert not find_overlaps(held)
    recs = parse_kvlog(log)
    ok, text = check_handover(recs, held, base + 900_000 * us, "h1", "h2")
    assert ok and text.startswith("VIP off 0.40 ms before vacant (rev 3, epoch 1); VIP on 0.70 ms after win"), text
    assert check_adds(recs, held) == ([], [], 2)
    # The old leader drops the VIP after its vacant record; the new one adds before its win.
    late = mon("late", [(base + 10_000 * us, "add"), (base + 1_000_500 * us, "del")])
    early = mon("early", [(base + 1_000_300 * us, "add")])
    held = host_intervals("192.0.2.100", ["h1=" + late, "h2=" + early])
    ok, text = check_handover(recs, held, base + 900_000 * us, "h1", "h2")
    assert not ok and "AFTER its vacant record" in text, text
    held = host_intervals("192.0.2.100", ["h1=" + h1, "h2=" + early])
    ok, text = check_handover(recs, held, base + 900_000 * us, "h1", "h2")
    assert not ok and "BEFORE its winning write" in text, text
    bad, unverified, _ = check_adds(recs, held)
    assert len(bad) == 1 and bad[0].startswith("h2 added") and not unverified, (bad, unverified)
    assert find_overlaps(host_intervals("192.0.2.100", ["h1=" + late, "h2=" + early]))
    # A revision gap around an early add makes it unverified, not failed.
    gap = kv("gap", [(base + 1_000 * us, 1, "h1", 1), (base + 1_001_000 * us, 5, "h2", 2)])
    bad, unverified, _ = check_adds(parse_kvlog(gap), held)
    assert not bad and len(unverified) == 1, (bad, unverified)
    # Takeovers: h2 took over h1's lease (no vacant record) 2000.5 ms after it: fine; 1999 ms: early.
    ok_take = kv("take", [(base + 1_000 * us, 1, "h1", 1), (base + 2_001_500 * us, 2, "h2", 2),
                          (base + 2_500_000 * us, 3, "h2", 2)])
    taken = takeovers(parse_kvlog(ok_take))
    assert len(taken) == 1 and taken[0][2] == 2_000_500 * us and taken[0][3] == 2000 * 1_000_000, taken
    early_take = kv("early_take", [(base + 1_000 * us, 1, "h1", 1), (base + 2_000_000 * us, 2, "h2", 2)])
    taken = takeovers(parse_kvlog(early_take))
    assert len(taken) == 1 and not taken[0][2] >= taken[0][3], taken
    assert takeovers(recs) == []  # rev 4 followed a vacant record
    # A lost bucket: revision 1 again. Even after a vacant record its first record must wait a lease.
    lost_ok = kv("lost_ok", [(base + 1_000 * us, 7, "", 3), (base + 2_101_000 * us, 1, "h2", 4)])
    taken = takeovers(parse_kvlog(lost_ok))
    assert len(taken) == 1 and taken[0][2] >= taken[0][3], taken
    lost_early = kv("lost_early", [(base + 1_000 * us, 7, "h1", 3), (base + 300_000 * us, 1, "h1", 4)])
    taken = takeovers(parse_kvlog(lost_early))
    assert len(taken) == 1 and not taken[0][2] >= taken[0][3], taken
    # An add between the old generation's last record and the new one's first is judged, not left
    # unverified: nothing can have been missed in between.
    held_new = host_intervals("192.0.2.100", ["h2=" + mon("h2_new", [(base + 200_000 * us, "add")])])
    bad, unverified, _ = check_adds(parse_kvlog(lost_early), held_new)
    assert len(bad) == 1 and not unverified, (bad, unverified)
    # Stability after h2 took over: renewals only; a later record of another holder breaks it.
    held = host_intervals("192.0.2.100", ["h1=" + h1, "h2=" + h2])
    ok, text = check_stable(recs, held, base + 1_002_000 * us, "h2")
    assert ok, text
    ok, text = check_stable(recs, held, base + 900_000 * us, "h1")
    assert not ok and "rev 3" in text, text
    for name in os.listdir(d):
        os.unlink(os.path.join(d, name))
    os.rmdir(d)
    print("lab_tools selftest OK")


if __name__ == "__main__":
    cmds = {"ping": cmd_ping, "vippoll": cmd_vippoll, "arpwatch": cmd_arpwatch, "gap": cmd_gap,
            "overlaps": cmd_overlaps, "handover": cmd_handover, "order": cmd_order, "takeover": cmd_takeover,
            "stable": cmd_stable, "edge": cmd_edge,
            "selftest": cmd_selftest}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    cmds[sys.argv[1]](*sys.argv[2:])
