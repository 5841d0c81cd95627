#!/bin/sh
# First start of the compose deployment's secure Kafka (runs in apache/kafka:4.1.1):
# a CA and a broker certificate (keytool), one SCRAM-SHA-512 password per role, the
# broker's properties, and storage formatted with the SCRAM users. Kept in the
# `secrets` and `kafka-data` volumes; a second run changes nothing.
# Mirrors streams/broker_security.py (the local `trackbone kafka start --secure`).
set -eu
S=/secrets
[ -f "$S/.done" ] && exit 0
umask 077
secret() { head -c 24 /dev/urandom | base64 | tr -d '/+=\n'; }
for role in admin carrier worker sink downstream; do secret > "$S/$role.password"; done
STORE=$(secret); CONTROLLER=$(secret)
SAN="SAN=dns:kafka,dns:localhost,ip:127.0.0.1"
keytool -genkeypair -alias ca -keyalg RSA -keysize 2048 -validity 3650 -dname "CN=trackbone compose CA" \
  -ext bc:c -keystore "$S/ca.p12" -storetype PKCS12 -storepass "$STORE" -keypass "$STORE"
keytool -exportcert -rfc -alias ca -keystore "$S/ca.p12" -storepass "$STORE" -file "$S/ca.pem"
keytool -genkeypair -alias broker -keyalg RSA -keysize 2048 -validity 825 -dname "CN=kafka" -ext "$SAN" \
  -keystore "$S/broker.p12" -storetype PKCS12 -storepass "$STORE" -keypass "$STORE"
keytool -certreq -alias broker -keystore "$S/broker.p12" -storepass "$STORE" -file "$S/broker.csr"
keytool -gencert -rfc -alias ca -keystore "$S/ca.p12" -storepass "$STORE" -infile "$S/broker.csr" \
  -outfile "$S/broker.crt" -ext "$SAN" -ext EKU=serverAuth -validity 825
keytool -importcert -noprompt -alias ca -file "$S/ca.pem" -keystore "$S/broker.p12" -storepass "$STORE"
keytool -importcert -noprompt -alias broker -file "$S/broker.crt" -keystore "$S/broker.p12" -storepass "$STORE"
ADMIN=$(cat "$S/admin.password")
cat > "$S/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=kafka:9093
listeners=SASL_SSL://:9092,CONTROLLER://:9093
advertised.listeners=SASL_SSL://kafka:9092,CONTROLLER://kafka:9093
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$ADMIN";
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="controller" password="$CONTROLLER" user_controller="$CONTROLLER";
ssl.keystore.type=PKCS12
ssl.keystore.location=$S/broker.p12
ssl.keystore.password=$STORE
ssl.key.password=$STORE
ssl.truststore.type=PEM
ssl.truststore.location=$S/ca.pem
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin;User:controller
auto.create.topics.enable=false
log.dirs=/var/lib/kafka/data
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
num.partitions=8
PROPS
cat > "$S/admin.properties" <<PROPS
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$ADMIN";
ssl.truststore.type=PEM
ssl.truststore.location=$S/ca.pem
PROPS
SCRAM=""
for role in admin carrier worker sink downstream; do
  SCRAM="$SCRAM --add-scram SCRAM-SHA-512=[name=$role,password=$(cat "$S/$role.password")]"
done
# shellcheck disable=SC2086
/opt/kafka/bin/kafka-storage.sh format --standalone -t "$(/opt/kafka/bin/kafka-storage.sh random-uuid)" \
  -c "$S/server.properties" $SCRAM
echo '{}' > "$S/carrier-keys.json"
# the containers of the other roles run as other users: each reads only its own file
chmod 0644 "$S"/*.password "$S/ca.pem" "$S/carrier-keys.json"
rm -f "$S/broker.csr"
touch "$S/.done"
