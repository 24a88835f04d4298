// Kafka's own record code (kafka-clients 4.3.0) reading a partition's segment files from disk.
//
//   java -cp 'lib/*:BUILD_DIR' ReadSegments FILE.log [FILE.log ...]
//
// Each file is read as Kafka's log layer reads one (MemoryRecords over the file's bytes):
// every batch has its CRC checked (ensureValid) and its records decoded, compressed ones
// through Kafka's codecs. Prints one line of JSON per batch: the file, base and last offset,
// magic, codec, transactional and control flags, producer id, and each record's offset,
// timestamp, key and value (as UTF-8). Exit status 0 unless a batch fails its check or a
// file holds bytes after its last whole batch.

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.apache.kafka.common.record.internal.MemoryRecords;
import org.apache.kafka.common.record.internal.MutableRecordBatch;
import org.apache.kafka.common.record.internal.Record;

public class ReadSegments {
    public static void main(String[] args) throws Exception {
        for (String name : args) {
            byte[] bytes = Files.readAllBytes(Path.of(name));
            MemoryRecords records = MemoryRecords.readableRecords(ByteBuffer.wrap(bytes));
            int read = 0;
            for (MutableRecordBatch batch : records.batches()) {
                batch.ensureValid();
                read += batch.sizeInBytes();
                Map<String, Object> out = new LinkedHashMap<>();
                out.put("file", Path.of(name).getFileName().toString());
                out.put("base_offset", batch.baseOffset());
                out.put("last_offset", batch.lastOffset());
                out.put("magic", (int) batch.magic());
                out.put("compression", batch.compressionType().name);
                out.put("transactional", batch.isTransactional());
                out.put("control", batch.isControlBatch());
                out.put("producer_id", batch.producerId());
                List<Object> rs = new ArrayList<>();
                for (Record r : batch) {
                    Map<String, Object> rec = new LinkedHashMap<>();
                    rec.put("offset", r.offset());
                    rec.put("timestamp", r.timestamp());
                    rec.put("key", r.hasKey() ? text(r.key()) : null);
                    rec.put("value", r.hasValue() ? text(r.value()) : null);
                    rs.add(rec);
                }
                out.put("records", rs);
                System.out.println(Json.json(out));
            }
            if (read != bytes.length) {
                throw new IllegalStateException(name + ": " + (bytes.length - read)
                        + " bytes after the last whole batch");
            }
        }
    }

    private static String text(ByteBuffer b) {
        byte[] a = new byte[b.remaining()];
        b.get(a);
        return new String(a, StandardCharsets.UTF_8);
    }
}
