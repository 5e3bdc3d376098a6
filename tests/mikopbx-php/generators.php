<?php
/*
 * The four MikoPBX generators that cannot run here, as fixtures. Each reads
 * dozens of models (employees, providers, routes, network settings...) that a
 * test database does not hold in the shape a real PBX does, so the text it
 * would generate comes from a fixture: the scratch Asterisk's own
 * configuration (tests/fixtures/real-asterisk/, filled with its ports), which
 * plays the PBX's generated text. Everything around the text is MikoPBX's:
 *
 * - the text is written with the release's Util::fileWriteContent(), so the
 *   admin's "Customize system files" rows (m_CustomFiles: none, append,
 *   override, script) apply exactly as on MikoPBX, <file>.orgn included;
 * - reload() then sends the scratch Asterisk the CLI commands the release's
 *   reload() sends (ExtensionsConf.php:311, ManagerConf.php:258,
 *   SIPConf.php:2398);
 * - pjsip.conf gets each employee's advanced options (m_Sip.manualattributes)
 *   read with the release's Util::parseIniSettings() and merged over the
 *   endpoint's and the aor's options as SIPConf's generatePeersPj() does
 *   (SIPConf.php:2018-2040: a key given again replaces the generated one);
 * - SIPConf::needAsteriskRestart() answers whether the network topology
 *   changed since Asterisk started; here, whether the test said so (the file
 *   <var>/topology-changed), and reload() then restarts as the release does
 *   (not used by the suite: featpkg refuses before that);
 * - the crontab: CronConf writes /var/spool/cron/crontabs/root with
 *   fileWriteContent(); that path is the test tree's (under the PBX root), so
 *   the custom-file rule is applied here, line for line as in Util.php:261-317,
 *   to the row of the PBX's own path.
 */

namespace MikoPBX\Core\Asterisk\Configs;

use FeatpkgHarness;
use MikoPBX\Common\Models\CustomFiles;
use MikoPBX\Common\Models\Sip;
use MikoPBX\Core\System\Processes;
use MikoPBX\Core\System\Util;

/** The generated text of `name` (the fixture the test wrote) written as MikoPBX writes it. */
function harness_write(string $name, ?string $text = null): void
{
    $s = FeatpkgHarness\settings();
    $text ??= (string) file_get_contents($s['generated'] . '/' . $name);
    Util::fileWriteContent($s['ast_etc'] . '/' . $name, $text);
}

function harness_cli(string $command): void
{
    $cli = FeatpkgHarness\settings()['asterisk_cli'];
    Processes::mwExec("$cli -rx " . escapeshellarg($command));
}

class ExtensionsConf
{
    public function generateConfig(): void
    {
        harness_write('extensions.conf');
    }

    public static function reload(): void
    {
        // A test that needs a run still going (a second hook call meeting it)
        // makes the dialplan reload take a while, as a big one does.
        $slow = FeatpkgHarness\settings()['var'] . '/slow-reload';
        if (is_file($slow)) {
            touch($slow . '.started');
            sleep((int) file_get_contents($slow));
        }
        (new self())->generateConfig();
        harness_cli('dialplan reload');
        harness_cli('module reload pbx_lua.so');
    }
}

class ManagerConf
{
    public function generateConfig(): void
    {
        harness_write('manager.conf');
    }

    public static function reload(): void
    {
        (new self())->generateConfig();
        harness_cli('module reload manager');
        harness_cli('module reload http');
    }
}

class SIPConf
{
    public function needAsteriskRestart(): bool
    {
        return is_file(FeatpkgHarness\settings()['var'] . '/topology-changed');
    }

    public function generateConfig(): void
    {
        $text = (string) file_get_contents(FeatpkgHarness\settings()['generated'] . '/pjsip.conf');
        foreach (Sip::find(['conditions' => 'type = "peer"']) as $peer) {
            if ($peer->disabled === '1' || (string) $peer->manualattributes === '') {
                continue;
            }
            $options = Util::parseIniSettings((string) $peer->manualattributes);
            foreach (['endpoint', 'aor'] as $type) {
                if (!empty($options[$type])) {
                    $text = self::merge($text, (string) $peer->extension, $type, $options[$type]);
                }
            }
        }
        harness_write('pjsip.conf', $text);
    }

    /**
     * The fixture's section of `type` for `extension` ("[201](pbx-endpoint)"
     * or "[201]" with "type = aor") with `options` merged over it: a key
     * given again replaces the generated line in place, a new key is added
     * at the end, as SIPConf's array_merge over its option arrays does.
     */
    private static function merge(string $text, string $extension, string $type, array $options): string
    {
        $lines = explode("\n", $text);
        $start = null;
        foreach ($lines as $i => $line) {
            if (preg_match('/^\[' . preg_quote($extension, '/') . '\](\(.*\))?\s*$/', $line, $m)) {
                $isEndpoint = isset($m[1]) && $m[1] !== '';
                $body = implode("\n", array_slice($lines, $i + 1, 3));
                if (($type === 'endpoint' && $isEndpoint) || ($type === 'aor' && str_contains($body, 'type = aor'))) {
                    $start = $i;
                    break;
                }
            }
        }
        if ($start === null) {
            throw new \RuntimeException("pjsip.conf fixture has no $type section for $extension");
        }
        $end = $start + 1;
        while ($end < count($lines) && !str_starts_with($lines[$end], '[') && trim($lines[$end]) !== '') {
            $end++;
        }
        $section = array_slice($lines, $start + 1, $end - $start - 1);
        foreach ($options as $key => $value) {
            $found = false;
            foreach ($section as $j => $line) {
                if (preg_match('/^\s*' . preg_quote((string) $key, '/') . '\s*=/', $line)) {
                    $section[$j] = "$key = $value";
                    $found = true;
                }
            }
            if (!$found) {
                $section[] = "$key = $value";
            }
        }
        array_splice($lines, $start + 1, $end - $start - 1, $section);
        return implode("\n", $lines);
    }

    public static function reload(): void
    {
        $sip = new self();
        $needRestart = $sip->needAsteriskRestart();
        $sip->generateConfig();
        if ($needRestart === false) {
            harness_cli('module reload acl');
            harness_cli('core reload');
        } else {
            harness_cli('core restart now');
        }
    }
}

namespace MikoPBX\Core\System\Configs;

use FeatpkgHarness;
use MikoPBX\Common\Models\CustomFiles;
use MikoPBX\Core\System\Processes;

class CronConf
{
    /** The PBX's path; the file itself is under the test's PBX root. */
    public const CRONTAB = '/var/spool/cron/crontabs/root';

    public function reStart(): bool
    {
        $s = FeatpkgHarness\settings();
        $data = (string) file_get_contents($s['generated'] . '/crontab');
        $filename = $s['root'] . self::CRONTAB;
        if (!is_dir(dirname($filename))) {
            mkdir(dirname($filename), 0755, true);
        }
        // Util::fileWriteContent(), for a file whose row is keyed by another path.
        $res = CustomFiles::findFirst(['conditions' => 'filepath = :path:', 'bind' => ['path' => self::CRONTAB]]);
        if ($res === null) {
            $res = new CustomFiles();
            $res->writeAttribute('filepath', self::CRONTAB);
            $res->writeAttribute('mode', CustomFiles::MODE_NONE);
            $res->save();
        }
        $filename_orgn = "$filename.orgn";
        switch ($res->mode) {
            case CustomFiles::MODE_NONE:
                if (file_exists($filename_orgn)) {
                    unlink($filename_orgn);
                }
                file_put_contents($filename, $data);
                break;
            case CustomFiles::MODE_APPEND:
                file_put_contents($filename_orgn, $data);
                $data .= "\n\n";
                $data .= base64_decode((string) $res->content);
                file_put_contents($filename, $data);
                break;
            case CustomFiles::MODE_OVERRIDE:
            case CustomFiles::MODE_CUSTOM:
                file_put_contents($filename_orgn, $data);
                file_put_contents($filename, base64_decode((string) $res->content));
                break;
            case CustomFiles::MODE_SCRIPT:
                file_put_contents($filename_orgn, $data);
                file_put_contents($filename, $data);
                $tempScriptFile = tempnam(sys_get_temp_dir(), 'temp_script.sh');
                file_put_contents($tempScriptFile, base64_decode((string) $res->content));
                Processes::mwExec("/bin/sh $tempScriptFile $filename");
                unlink($tempScriptFile);
                break;
        }
        return true;
    }
}
