# Sign in as the demo admin (`make demo` prints the password; `medcloud serve` creates the admin
# from MEDCLOUD_BOOTSTRAP_ADMIN_EMAIL and _PASSWORD on its first start).
MEDCLOUD=${MEDCLOUD:-http://localhost:8000}
PASSWORD=${PASSWORD:?set PASSWORD to the password the demo printed}
TOKEN=$(curl -sf -X POST "$MEDCLOUD/api/v1/auth/token" \
          -d username=admin@demo.medcloud -d password="$PASSWORD" | jq -r .access_token)
AUTH="Authorization: Bearer $TOKEN"
JSON='content-type: application/json'
RUN=$(date +%s)   # makes the identifiers below unique, so the tour runs again

# register a patient, then a pulse oximeter at their bedside
PATIENT=$(curl -sf -X POST "$MEDCLOUD/api/v1/patients" -H "$AUTH" -H "$JSON" -d '{
  "identifier_system": "urn:oid:2.16.840.1.113883.2.1.4.1", "identifier_value": "MRN-'"$RUN"'",
  "family_name": "Doe", "given_name": "Pat", "birth_date": "1948-03-02"}' | jq -r .id)
REGISTERED=$(curl -sf -X POST "$MEDCLOUD/api/v1/devices" -H "$AUTH" -H "$JSON" -d '{
  "serial_number": "PO-'"$RUN"'", "model": "PulseOx 2", "manufacturer": "Acme",
  "patient_id": "'"$PATIENT"'"}')
DEVICE=$(echo "$REGISTERED" | jq -r .id)
DEVICE_TOKEN=$(echo "$REGISTERED" | jq -r .token)   # shown only this once

# the device sends one reading (or a batch {"readings": [...]}, all or nothing): a heart rate of
# 134/min, above the default limit of 120. A reading belongs to the patient the device was
# assigned to when it was measured, so this one is taken a second after the assignment.
sleep 1
NOW=$(date -u +%Y-%m-%dT%H:%M:%SZ)
curl -sf -X POST "$MEDCLOUD/api/v1/devices/$DEVICE/data" -H "Authorization: Bearer $DEVICE_TOKEN" \
     -H "$JSON" -d '{"timestamp": "'"$NOW"'", "measurements": {"heart_rate": 134, "spo2": 97}}'; echo

# a clinician reads the device's readings, newest first (keyset paging via next_cursor) ...
curl -sf "$MEDCLOUD/api/v1/devices/$DEVICE/data?limit=100" -H "$AUTH" | jq '.items[0]'
# ... and the high-priority alarm the reading raised (analytics takes it from the bus)
for _ in $(seq 50); do
  ALARM=$(curl -sf "$MEDCLOUD/api/v1/alerts?patient_id=$PATIENT" -H "$AUTH" | jq '.items[0]')
  [ "$ALARM" != null ] && break || sleep 0.2
done
echo "$ALARM" | jq '{priority, rule, state, value}'
ALARM_ID=$(echo "$ALARM" | jq -r .id)

# acknowledging it stops escalation and tells whoever was already paged
curl -sf -X POST "$MEDCLOUD/api/v1/alerts/$ALARM_ID/acknowledge" -H "$AUTH" | jq '{state}'

curl -sf "$MEDCLOUD/health"; curl -sf "$MEDCLOUD/ready"; echo
