// Users already linked to a new applicant's identifiers, with when they linked: the applicant's
// 1-hop identifiers and 2-hop users, read without writing the applicant. Each pattern is
// anchored on an indexed id; a chain of OPTIONAL MATCHes (not UNION inside CALL, which ArcadeDB
// plans without the index) keeps it one round trip.
// At most $limit users per identifier, and each row carries its identifier's true number of
// users (rel_users): a LIMIT over all rows let a busy shared IP crowd out the applicant's
// document and phone links, and undercounted the IP.
OPTIONAL MATCH (n1:Device {id: $device})<-[r1:USED_DEVICE]-(u1:User)
WITH collect({rel: 'USED_DEVICE', node: n1.id, node_events: n1.event_count, node_first: n1.first_seen, user: u1.id, linked_at: r1.first_seen}) AS a1, count(u1) AS c1
OPTIONAL MATCH (n2:IP {id: $ip})<-[r2:USED_IP]-(u2:User)
WITH a1, c1, collect({rel: 'USED_IP', node: n2.id, node_events: n2.event_count, node_first: n2.first_seen, user: u2.id, linked_at: r2.first_seen}) AS a2, count(u2) AS c2
OPTIONAL MATCH (n3:Document {id: $document})<-[r3:HAS_DOCUMENT]-(u3:User)
WITH a1, c1, a2, c2, collect({rel: 'HAS_DOCUMENT', node: n3.id, node_events: n3.event_count, node_first: n3.first_seen, user: u3.id, linked_at: r3.first_seen}) AS a3, count(u3) AS c3
OPTIONAL MATCH (n4:Email {id: $email})<-[r4:HAS_EMAIL]-(u4:User)
WITH a1, c1, a2, c2, a3, c3, collect({rel: 'HAS_EMAIL', node: n4.id, node_events: n4.event_count, node_first: n4.first_seen, user: u4.id, linked_at: r4.first_seen}) AS a4, count(u4) AS c4
OPTIONAL MATCH (n5:Phone {id: $phone})<-[r5:HAS_PHONE]-(u5:User)
WITH a1, c1, a2, c2, a3, c3, a4, c4, collect({rel: 'HAS_PHONE', node: n5.id, node_events: n5.event_count, node_first: n5.first_seen, user: u5.id, linked_at: r5.first_seen}) AS a5, count(u5) AS c5
OPTIONAL MATCH (n6:Address {id: $address})<-[r6:LIVES_AT]-(u6:User)
WITH a1, c1, a2, c2, a3, c3, a4, c4, a5, c5, collect({rel: 'LIVES_AT', node: n6.id, node_events: n6.event_count, node_first: n6.first_seen, user: u6.id, linked_at: r6.first_seen}) AS a6, count(u6) AS c6
OPTIONAL MATCH (n7:Fingerprint {id: $fingerprint})<-[r7:USED_FINGERPRINT]-(u7:User)
WITH a1, c1, a2, c2, a3, c3, a4, c4, a5, c5, a6, c6, collect({rel: 'USED_FINGERPRINT', node: n7.id, node_events: n7.event_count, node_first: n7.first_seen, user: u7.id, linked_at: r7.first_seen}) AS a7, count(u7) AS c7
WITH a1[0..$limit] + a2[0..$limit] + a3[0..$limit] + a4[0..$limit] + a5[0..$limit] + a6[0..$limit] + a7[0..$limit] AS links,
     c1, c2, c3, c4, c5, c6, c7
UNWIND links AS link
WITH link, c1, c2, c3, c4, c5, c6, c7 WHERE link.user IS NOT NULL
RETURN link.rel AS rel, link.node AS node, link.node_events AS node_events, link.node_first AS node_first,
       link.user AS user, link.linked_at AS linked_at,
       CASE link.rel WHEN 'USED_DEVICE' THEN c1 WHEN 'USED_IP' THEN c2 WHEN 'HAS_DOCUMENT' THEN c3
                     WHEN 'HAS_EMAIL' THEN c4 WHEN 'HAS_PHONE' THEN c5 WHEN 'LIVES_AT' THEN c6
                     ELSE c7 END AS rel_users
