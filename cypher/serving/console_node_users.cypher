// One hop from an identifier, device or merchant, for the console's "expand": the users linked
// to it, most recent first, at most $limit of them, and `total`, how many there are (a hub IP
// has thousands; the API shows a capped few and a "more" marker). Exactly one of the
// parameters is a real id, the others null (match nothing): one statement, each pattern
// anchored on an indexed id, as in applicant_links.
OPTIONAL MATCH (n1:Device {id: $device})<-[r1:USED_DEVICE]-(u1:User)
WITH collect({rel: 'USED_DEVICE', user: u1.id, count: r1.count, first_seen: r1.first_seen, last_seen: r1.last_seen, amount: null}) AS links
OPTIONAL MATCH (n2:IP {id: $ip})<-[r2:USED_IP]-(u2:User)
WITH links, collect({rel: 'USED_IP', user: u2.id, count: r2.count, first_seen: r2.first_seen, last_seen: r2.last_seen, amount: null}) AS more
WITH links + more AS links
OPTIONAL MATCH (n3:Document {id: $document})<-[r3:HAS_DOCUMENT]-(u3:User)
WITH links, collect({rel: 'HAS_DOCUMENT', user: u3.id, count: r3.count, first_seen: r3.first_seen, last_seen: r3.last_seen, amount: null}) AS more
WITH links + more AS links
OPTIONAL MATCH (n4:Email {id: $email})<-[r4:HAS_EMAIL]-(u4:User)
WITH links, collect({rel: 'HAS_EMAIL', user: u4.id, count: r4.count, first_seen: r4.first_seen, last_seen: r4.last_seen, amount: null}) AS more
WITH links + more AS links
OPTIONAL MATCH (n5:Phone {id: $phone})<-[r5:HAS_PHONE]-(u5:User)
WITH links, collect({rel: 'HAS_PHONE', user: u5.id, count: r5.count, first_seen: r5.first_seen, last_seen: r5.last_seen, amount: null}) AS more
WITH links + more AS links
OPTIONAL MATCH (n6:Address {id: $address})<-[r6:LIVES_AT]-(u6:User)
WITH links, collect({rel: 'LIVES_AT', user: u6.id, count: r6.count, first_seen: r6.first_seen, last_seen: r6.last_seen, amount: null}) AS more
WITH links + more AS links
OPTIONAL MATCH (n7:Card {id: $card})<-[r7:USED_CARD]-(u7:User)
WITH links, collect({rel: 'USED_CARD', user: u7.id, count: r7.count, first_seen: r7.first_seen, last_seen: r7.last_seen, amount: null}) AS more
WITH links + more AS links
OPTIONAL MATCH (n9:Fingerprint {id: $fingerprint})<-[r9:USED_FINGERPRINT]-(u9:User)
WITH links, collect({rel: 'USED_FINGERPRINT', user: u9.id, count: r9.count, first_seen: r9.first_seen, last_seen: r9.last_seen, amount: null}) AS more
WITH links + more AS links
OPTIONAL MATCH (n8:Merchant {id: $merchant})<-[r8:PAID]-(u8:User)
WITH links, collect({rel: 'PAID', user: u8.id, count: r8.count, first_seen: r8.first_seen, last_seen: r8.last_seen, amount: r8.amount_total}) AS more
WITH links + more AS links
WITH [l IN links WHERE l.user IS NOT NULL] AS links
WITH links, size(links) AS total
UNWIND links AS link
RETURN link.rel AS rel, link.user AS user, link.count AS count, link.first_seen AS first_seen,
       link.last_seen AS last_seen, link.amount AS amount, total
ORDER BY last_seen DESC, user
LIMIT $limit
